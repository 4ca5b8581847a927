"""Locks that die with their holder, and the crontab line: correct, and installed once."""
from __future__ import annotations

import json
import os
import pwd
import shutil
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
                     log_file=tmp_path / "n.log")
    fields = line.split(" ", 5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    assert f"cd '{tmp_path / 'my project'}' && " in line and " nightly --data /d " in line
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
    assert "removed" in smartecg("schedule", "remove", "--user", cron_user).stdout
    lines = subprocess.run(["crontab", "-u", cron_user, "-l"], capture_output=True, text=True).stdout
    assert "smartecg" not in lines and "echo keep-me" in lines
