"""Locks that die with their holder, and the crontab line: correct, installed once, run as cron runs it."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys

import pytest
from cli_helpers import smartecg

from automl.lock import LockHeld, RunLock
from automl.schedule import cron_line, parse_time

HOLD = """
import sys, time
from automl.lock import RunLock
with RunLock(sys.argv[1], "nightly run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_at_once_naming_the_first(tmp_path):
    path = tmp_path / "nightly.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=rf"another nightly run is running \(pid {holder.pid} on "):
            with RunLock(path, "nightly run"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # Killed with its lock held: the kernel released it; the next holder takes over and says so.
    with RunLock(path, "nightly run") as lock:
        assert lock.stale["pid"] == holder.pid
        assert lock.stale_message().startswith(f"cleared a stale lock left by a nightly run that died (pid {holder.pid}")
        assert json.loads(path.read_text())["pid"] == os.getpid()
    with RunLock(path) as lock:  # the clean end above left nothing stale
        assert lock.stale is None and lock.stale_message() is None


HOLD_WITH_PASSWORD = """
import sys, time
from automl.lock import RunLock
sys.argv = ["smartecg", "nightly", "--tracking-uri", "postgresql://smartecg:tracking-s3cret@db/mlflow",
            "--storage=postgresql://smartecg:storage-s3cret@db/optuna"]
with RunLock({path!r}, "nightly run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_the_lock_file_never_shows_a_password_from_the_command_line(tmp_path):
    path = tmp_path / "nightly.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WITH_PASSWORD.format(path=str(path))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        text = path.read_text()  # every user of the machine may read it
    finally:
        holder.kill()
        holder.wait()
    record = json.loads(text)
    assert record["pid"] == holder.pid and "s3cret" not in text
    assert ("--tracking-uri postgresql://smartecg:***@db/mlflow --storage=postgresql://smartecg:***@db/optuna"
            in record["command"])


def test_the_cron_line_runs_nightly_from_here_with_this_environment(tmp_path):
    line = cron_line("02:30", "smartecg-nightly", workdir=tmp_path / "my project", arguments=["--data", "/d"],
                     log_file=tmp_path / "n.log", env_file=tmp_path / "n.env")
    fields = line.split(" ", 5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    assert f"cd '{tmp_path / 'my project'}' && " in line
    assert f" nightly --data /d --env-file {tmp_path / 'n.env'} " in line
    assert line.endswith(f">> {tmp_path / 'n.log'} 2>&1 # smartecg nightly: smartecg-nightly")
    assert os.path.dirname(sys.executable) in line  # cron's PATH knows no virtualenv
    assert parse_time("7:05") == (7, 5)
    for bad in ("24:00", "2am", "02:60"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_time(bad)


@pytest.fixture
def cron_user():
    """A throwaway user whose crontab the test may change (root only: never the developer's own)."""
    if os.geteuid() != 0 or shutil.which("crontab") is None or shutil.which("useradd") is None:
        pytest.skip("needs root and cron's crontab (.ci/run installs cron); never touches a real user's crontab")
    name = "smartecg-cron-test"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", name], check=True)
    subprocess.run(["crontab", "-u", name, "-r"], capture_output=True)
    yield name
    subprocess.run(["crontab", "-u", name, "-r"], capture_output=True)


def test_installing_twice_adds_the_line_once_and_remove_takes_it_out(cron_user, tmp_path):
    subprocess.run(["crontab", "-u", cron_user, "-"], input="0 5 * * * echo keep-me\n", text=True, check=True)
    args = ["schedule", "install", "--at", "03:15", "--data", tmp_path, "--user", cron_user]
    shown = smartecg(*args, "--print", cwd=tmp_path).stdout.strip()
    first = smartecg(*args, cwd=tmp_path).stdout
    second = smartecg(*args, cwd=tmp_path).stdout
    assert first.startswith("installed: ") and second.startswith("already installed: ")
    lines = subprocess.run(["crontab", "-u", cron_user, "-l"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in lines.splitlines() if "smartecg nightly:" in line]
    assert ours == [shown] and "echo keep-me" in lines
    assert shown.startswith("15 3 * * * ") and f"--data {tmp_path}" in shown
    moved = smartecg("schedule", "install", "--at", "04:00", "--data", tmp_path, "--user", cron_user,
                     cwd=tmp_path).stdout
    lines = subprocess.run(["crontab", "-u", cron_user, "-l"], capture_output=True, text=True).stdout
    assert moved.startswith("installed: 0 4 ") and [line.split()[:2] for line in lines.splitlines()
                                                      if "smartecg nightly:" in line] == [["0", "4"]]
    env_file = tmp_path / "mlruns" / "nightly-smartecg-nightly.env"
    assert env_file.exists()
    assert smartecg("schedule", "remove", "--user", cron_user).stdout.strip() == (
        f"removed the nightly line of smartecg-nightly and its environment file {env_file}")
    lines = subprocess.run(["crontab", "-u", cron_user, "-l"], capture_output=True, text=True).stdout
    assert "smartecg" not in lines and "echo keep-me" in lines
    assert not env_file.exists()  # it may hold passwords


def test_what_cron_cannot_carry_is_refused_in_one_line_naming_it(tmp_path):
    bad_data = tmp_path / "ecg\nimages"
    refused = smartecg("schedule", "install", "--print", "--data", bad_data, cwd=tmp_path, check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"smartecg: error: cannot put {str(bad_data)!r} in a crontab line: it holds a newline, which cron cannot "
        "carry; rename it, or run `smartecg nightly` from another scheduler (docs/scheduling.md)"]
    # cron reads "\%" as "%", so a backslash before "%" cannot be written in a crontab at all.
    for where in ({"workdir": tmp_path / "a\rb"}, {"log_file": tmp_path / "100\\%.log"}):
        with pytest.raises(ValueError, match="in a crontab line: it holds (a newline|a backslash before %)"):
            cron_line("02:00", "x", **{"workdir": tmp_path, "arguments": [], "log_file": tmp_path / "n.log",
                                       "env_file": tmp_path / "n.env", **where})


def as_cron_runs(entry: str) -> tuple[str, str]:
    """The command cron hands to ``sh -c`` for a crontab entry, and what it feeds to its stdin.

    cron's own rule (cronie, Debian's cron: do_command.c): a bare ``%`` ends the command and the
    rest goes to stdin; ``\\%`` is a ``%``; a backslash before anything else stays, and escapes it.
    """
    command = entry.split(None, 5)[5]  # after minute, hour, day, month, weekday
    out: list[str] = []
    escaped = False
    for i, char in enumerate(command):
        if escaped:
            if char == "%":
                out[-1] = "%"
            else:
                out.append(char)
            escaped = False
            continue
        if char == "%":
            return "".join(out), command[i + 1:]
        out.append(char)
        escaped = char == "\\"
    return "".join(out), ""


def run_like_cron(entry: str, home) -> subprocess.CompletedProcess:
    """Run a crontab entry as cron would: its % rule, then ``sh -c`` with cron's bare environment."""
    command, stdin = as_cron_runs(entry)
    assert stdin == "", f"cron would cut the command at a bare %: {command!r}"
    environment = {"HOME": str(home), "LOGNAME": "cron", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
    if os.environ.get("PYTHONPATH"):  # the code under test, for a checkout (an installed SmartECG needs none)
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(["/bin/sh", "-c", command], input="", env=environment, capture_output=True, text=True,
                          timeout=120)


def our_entry(user: str) -> str:
    lines = subprocess.run(["crontab", "-u", user, "-l"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in lines.splitlines() if "smartecg nightly:" in line]
    assert len(ours) == 1, lines
    return ours[0]


@pytest.mark.slow  # real processes end to end (a few seconds each)
def test_paths_with_percent_and_the_installing_environment_reach_the_nightly_run(cron_user, tmp_path):
    workdir, data, cache = tmp_path / "100% sure", tmp_path / "pages 5%", tmp_path / "cache %d"
    workdir.mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    smartecg("schedule", "install", "--data", data, "--experiment", "quick", "--budget", "1m", "--user", cron_user,
             cwd=workdir, env={"SMARTECG_CACHE": str(cache), "MLFLOW_TRACKING_URI": uri})
    entry = our_entry(cron_user)
    assert "100\\% sure" in entry  # cron's escape, in the crontab as installed

    night = run_like_cron(entry, home=tmp_path / "home")
    log = (workdir / "mlruns" / "nightly.log").read_text()  # the %-path the line appends to
    assert night.returncode == 2, log  # the run started there and refused the missing data
    state = cache / "nightly" / "smartecg-quick"
    assert f"nightly run of smartecg-quick: data {data}, MLflow {uri}, state {state}" in log, log
    assert f"smartecg: error: {data}: no such folder" in log
    assert (state / "nightly.lock").exists()


@pytest.mark.slow  # real processes end to end (a few seconds each)
def test_secrets_go_to_a_0600_env_file_the_run_reads_never_to_the_crontab(cron_user, tmp_path):
    storage = "postgresql://smartecg:storage-s3cret@db.invalid/optuna"
    smartecg("schedule", "install", "--data", tmp_path / "pages", "--experiment", "nightly", "--user", cron_user,
             "--storage", storage, "--tracking-uri", "http://smartecg:tracking-s3cret@mlflow.invalid:5000",
             cwd=tmp_path, env={"MLFLOW_TRACKING_TOKEN": "token-s3cret", "PGPASSWORD": "pg-s3cret"})
    entry = our_entry(cron_user)
    assert "s3cret" not in entry and "--storage" not in entry and "--tracking-uri" not in entry

    env_file = tmp_path / "mlruns" / "nightly-smartecg-nightly.env"
    assert f"--env-file {env_file} " in entry
    status = env_file.stat()
    assert stat.S_IMODE(status.st_mode) == 0o600 and status.st_uid == pwd.getpwnam(cron_user).pw_uid
    kept = env_file.read_text()
    assert all(secret in kept for secret in ("storage-s3cret", "tracking-s3cret", "token-s3cret", "pg-s3cret"))

    night = run_like_cron(entry, home=tmp_path / "home")
    log = (tmp_path / "mlruns" / "nightly.log").read_text()
    # The run took the stores from the file (the command line names neither) and shows no password.
    assert night.returncode == 2 and "s3cret" not in log, log
    assert ("MLflow http://smartecg:***@mlflow.invalid:5000, Optuna postgresql://smartecg:***@db.invalid/optuna"
            in log), log


def test_an_unknown_user_is_refused_in_one_line(tmp_path):
    refused = smartecg("schedule", "install", "--data", tmp_path, "--user", "no-such-smartecg-user", cwd=tmp_path,
                       check=False)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == ["smartecg: error: --user no-such-smartecg-user: no such user on this machine"]
    assert not (tmp_path / "mlruns" / "nightly-smartecg-nightly.env").exists()
