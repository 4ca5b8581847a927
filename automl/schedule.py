"""``smartecg schedule``: the nightly run as a crontab line, installed once however often it is asked.

The line runs ``smartecg nightly`` from the folder it was installed from (where ``mlruns/`` and
the data are), with the same Python environment, and appends its output to a log file. A marker
comment at its end names the experiment, so installing again replaces the line instead of adding
a second one, and ``schedule remove`` finds it. The same job as a systemd timer or a Kubernetes
CronJob is in ``docs/scheduling.md``.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

__all__ = ["CronError", "cron_line", "install", "installed_lines", "parse_time", "remove"]

_MARKER = "# smartecg nightly:"


class CronError(RuntimeError):
    """crontab is missing or refused the change."""


def parse_time(text: str) -> tuple[int, int]:
    """(hour, minute) of ``"02:00"``; anything else is refused in one line."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"--at takes a time of day as HH:MM (e.g. 02:00), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def cron_line(at: str, experiment: str, *, workdir: str | Path, arguments: list[str], log_file: str | Path) -> str:
    """``MM HH * * * cd WORKDIR && SMARTECG nightly ARGS >> LOG 2>&1 # smartecg nightly: EXPERIMENT``."""
    from automl.cli import smartecg_command

    hour, minute = parse_time(at)
    command = [*smartecg_command(), "nightly", *arguments]  # cron's PATH does not include a virtualenv
    return (f"{minute} {hour} * * * cd {shlex.quote(str(workdir))} && {shlex.join(command)} "
            f">> {shlex.quote(str(log_file))} 2>&1 {_MARKER} {experiment}")


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


def remove(experiment: str, user: str | None = None) -> int:
    """Take ``experiment``'s nightly line out of the crontab; the number of lines removed."""
    lines = installed_lines(user)
    kept = [entry for entry in lines if not _is_ours(entry, experiment)]
    if len(kept) != len(lines):
        _write(kept, user)
    return len(lines) - len(kept)


def _is_ours(entry: str, experiment: str) -> bool:
    return entry.rstrip().endswith(f"{_MARKER} {experiment}")


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
