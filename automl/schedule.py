"""``smartecg schedule``: the nightly run as a crontab line, installed once however often it is asked.

The line runs ``smartecg nightly`` from the folder it was installed from (where ``mlruns/`` and
the data are), with the same Python environment, and appends its output to a log file. A marker
comment at its end names the experiment, so installing again replaces the line instead of adding
a second one, and ``schedule remove`` finds it. The same job as a systemd timer or a Kubernetes
CronJob is in ``docs/scheduling.md``.

cron starts the line with almost no environment, so the variables the run reads (tracking URI,
cache folder, the stores' logins) are written at install time to an environment file of mode
0600 that the line passes to ``smartecg nightly --env-file``: passwords stay out of the crontab
and out of ``ps``, where every user of the machine can read them.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from features.atomic import replacing

__all__ = ["CARRIED_ENVIRONMENT", "CronError", "carried_environment", "cron_line", "env_file_of", "install",
           "installed_lines", "parse_time", "read_env_file", "remove", "write_env_file"]

_MARKER = "# smartecg nightly:"

# What the nightly run reads from its environment, carried from the installing shell into cron's.
CARRIED_ENVIRONMENT = (
    # SmartECG: the MLflow store, the cache (features, splits, the nightly state), ImageNet weights
    "MLFLOW_TRACKING_URI", "SMARTECG_CACHE", "KERAS_HOME",
    # `smartecg nightly` only: the Optuna storage, kept here because its URL may hold a password
    "SMARTECG_OPTUNA_STORAGE",
    # MLflow's client: a tracking server's login and TLS
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    # the artifact stores MLflow writes models to
    "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCESS_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    # libpq: PostgreSQL stores (MLflow's, Optuna's) whose URL names no password
    "PGPASSWORD", "PGPASSFILE",
)
_PATH_VARIABLES = ("SMARTECG_CACHE", "KERAS_HOME", "PGPASSFILE", "GOOGLE_APPLICATION_CREDENTIALS",
                   "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CronError(RuntimeError):
    """crontab is missing or refused the change."""


def parse_time(text: str) -> tuple[int, int]:
    """(hour, minute) of ``"02:00"``; anything else is refused in one line."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"--at takes a time of day as HH:MM (e.g. 02:00), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def cron_line(at: str, experiment: str, *, workdir: str | Path, arguments: list[str], log_file: str | Path,
              env_file: str | Path) -> str:
    """``MM HH * * * cd DIR && SMARTECG nightly ARGS --env-file ENV >> LOG 2>&1 # smartecg nightly: EXPERIMENT``.

    ``%`` is escaped (cron cuts the command at a bare ``%`` and feeds the rest to its stdin);
    a value cron cannot carry (a newline, any control character, a backslash before ``%``) is
    refused in one line naming it.
    """
    from automl.cli import smartecg_command

    hour, minute = parse_time(at)
    command = [*smartecg_command(), "nightly", *arguments, "--env-file", str(env_file)]  # cron's PATH has no venv
    for value in [str(workdir), *command, str(log_file), experiment]:
        _check_cron_can_carry(value)
    shell = (f"cd {shlex.quote(str(workdir))} && {shlex.join(command)} >> {shlex.quote(str(log_file))} 2>&1 "
             f"{_MARKER} {experiment}")
    return f"{minute} {hour} * * * {_escape_percent(shell)}"


def _escape_percent(command: str) -> str:
    # cron ends the command at a bare "%" (the rest goes to its stdin); "\%" reaches the shell as "%".
    return command.replace("%", r"\%")


def _check_cron_can_carry(value: str) -> None:
    # A crontab entry is one line, and cron reads "\%" as "%": a backslash before "%" cannot be written.
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        what = "a newline" if bad in "\r\n" else f"the control character {bad!r}"
    elif "\\%" in value:
        what = "a backslash before %"
    else:
        return
    raise ValueError(f"cannot put {value!r} in a crontab line: it holds {what}, which cron cannot carry; "
                     "rename it, or run `smartecg nightly` from another scheduler (docs/scheduling.md)")


def carried_environment(environ: Mapping[str, str], **overrides: str | None) -> dict[str, str]:
    """The variables of :data:`CARRIED_ENVIRONMENT` set in ``environ`` (paths made absolute: the run
    starts elsewhere), then ``overrides`` that are not None (the command line's options)."""
    carried = {name: environ[name] for name in CARRIED_ENVIRONMENT if environ.get(name)}
    carried.update({name: value for name, value in overrides.items() if value is not None})
    for name in _PATH_VARIABLES:
        if name in carried:
            carried[name] = str(Path(carried[name]).expanduser().absolute())
    return carried


def write_env_file(path: str | Path, variables: dict[str, str], user: str | None = None) -> Path:
    """Write ``NAME='value'`` lines (shell quoting) readable by its owner only: ``user`` when given
    (root installing another user's line), else whoever runs this."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# The environment of `smartecg nightly`, written by `smartecg schedule install` on "
            f"{time.strftime('%Y-%m-%d %H:%M')}.\n# Mode 0600: it may hold passwords.\n"
            + "".join(f"{name}={shlex.quote(value)}\n" for name, value in variables.items()))
    with replacing(path) as tmp:
        # Created 0600, so never readable by others, not even for a moment; then written and renamed.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            if user:
                _give_to(handle.fileno(), user, path)
            handle.write(text)
    return path


def _give_to(fd: int, user: str, path: Path) -> None:
    import pwd

    try:
        owner = pwd.getpwnam(user)
        os.fchown(fd, owner.pw_uid, owner.pw_gid)
    except KeyError:
        raise ValueError(f"--user {user}: no such user on this machine") from None
    except PermissionError:
        raise PermissionError(f"{path}: only root can write it for user {user} (--user)") from None


def read_env_file(path: str | Path) -> dict[str, str]:
    """The variables of an environment file :func:`write_env_file` wrote; refused in one line when
    missing, readable by group or others, or not ``NAME=value`` lines."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such environment file; `smartecg schedule install` writes it") from None
    if mode & 0o077:  # like ssh with a private key: refused, not used
        raise PermissionError(f"{path} is open to other users (mode {mode:04o}) and may hold passwords; "
                              f"run `chmod 600 {shlex.quote(str(path))}`")
    variables = {}
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}; write one NAME='value' a line") from None
    for token in tokens:
        name, equals, value = token.partition("=")
        if not equals or not _NAME.fullmatch(name):  # not shown: it may be a password
            raise ValueError(f"{path}: holds a word that is not NAME=value; write one NAME='value' a line")
        variables[name] = value
    return variables


def installed_lines(user: str | None = None) -> list[str]:
    """The crontab's lines (empty when the user has none)."""
    result = subprocess.run([*_crontab(user), "-l"], capture_output=True, text=True)
    if result.returncode != 0:
        if "no crontab" in result.stderr.lower():
            return []
        raise CronError(f"crontab -l failed: {result.stderr.strip() or result.returncode}")
    return result.stdout.splitlines()


def install(line: str, experiment: str, user: str | None = None) -> bool:
    """Put ``line`` in the crontab in place of any earlier one for ``experiment``; False when it was there already."""
    lines = installed_lines(user)
    kept = [entry for entry in lines if not _is_ours(entry, experiment)]
    if len(kept) == len(lines) - 1 and line in lines:
        return False
    _write(kept + [line], user)
    return True


def remove(experiment: str, user: str | None = None) -> list[str]:
    """Take ``experiment``'s nightly line out of the crontab, and delete the environment file it
    read (it may hold passwords); the lines removed."""
    lines = installed_lines(user)
    ours = [entry for entry in lines if _is_ours(entry, experiment)]
    if ours:
        _write([entry for entry in lines if entry not in ours], user)
    for entry in ours:
        env_file = env_file_of(entry)
        if env_file is not None:
            env_file.unlink(missing_ok=True)
    return ours


def env_file_of(entry: str) -> Path | None:
    """The ``--env-file`` a nightly crontab line passes (None for a line installed before there was one)."""
    command = entry.split(None, 5)[5].replace("\\%", "%")  # cron's reading of the line
    words = shlex.split(command, comments=True)
    return Path(words[words.index("--env-file") + 1]) if "--env-file" in words else None


def _is_ours(entry: str, experiment: str) -> bool:
    return entry.rstrip().endswith(_escape_percent(f"{_MARKER} {experiment}"))


def _write(lines: list[str], user: str | None) -> None:
    text = "".join(f"{line}\n" for line in lines)
    result = subprocess.run([*_crontab(user), "-"], input=text, capture_output=True, text=True)
    if result.returncode != 0:
        raise CronError(f"crontab refused the change: {result.stderr.strip() or result.returncode}")


def _crontab(user: str | None) -> list[str]:
    found = shutil.which("crontab")
    if found is None:
        raise CronError("crontab not found: install cron (Debian: apt-get install cron), or add the line shown by "
                        "`smartecg schedule install --print` to your scheduler")
    return [found, *(["-u", user] if user else [])]
