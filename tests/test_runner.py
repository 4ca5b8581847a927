"""Engine workers: stopped whole (with their helper processes) at the deadline, results kept."""
import os
import subprocess
import sys
import textwrap
import time

from automl.engines.runner import run_worker

SLEEPER = textwrap.dedent("""
    import pathlib, subprocess, sys, time
    workdir = pathlib.Path(sys.argv[1])
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # like a Dask worker
    (workdir / "helper.pid").write_text(str(helper.pid))
    for i in range(600):
        with open(workdir / "progress.txt", "a") as fh:
            fh.write(f"{i}\\n")
        time.sleep(0.1)
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_a_worker_and_its_helpers_are_stopped_at_the_deadline(tmp_path):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "sleeper.py").write_text(SLEEPER)
    polls = []
    start = time.monotonic()
    run = run_worker("sleeper", tmp_path / "work", start + 2.0, poll=lambda: polls.append(time.monotonic()),
                     poll_seconds=0.2, env={"PYTHONPATH": str(tmp_path / "mods")})
    took = time.monotonic() - start
    assert run.stopped and took < 2.0 + 4.0  # SIGTERM at the deadline; SIGKILL after the grace period at worst
    assert len(polls) >= 5
    helper = int((tmp_path / "work" / "helper.pid").read_text())
    time.sleep(0.2)
    assert not alive(helper)
    # What the worker wrote before the stop is there.
    assert len((tmp_path / "work" / "progress.txt").read_text().split()) >= 5


def test_a_worker_that_finishes_early_is_not_marked_stopped(tmp_path):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "quick.py").write_text("import sys; print('done', sys.argv[1])")
    run = run_worker("quick", tmp_path / "work", time.monotonic() + 30, env={"PYTHONPATH": str(tmp_path / "mods")})
    assert not run.stopped and run.returncode == 0 and "done" in run.tail()


def test_a_worker_stops_its_group_when_its_parent_dies(tmp_path):
    """kill -9 of a search must not leave its engine running on."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "orphan.py").write_text(textwrap.dedent("""
        import pathlib, sys, time
        from automl.engines.runner import watch_parent
        watch_parent(interval=0.1)
        pathlib.Path(sys.argv[1], "worker.pid").write_text(str(__import__("os").getpid()))
        time.sleep(600)
    """))
    parent_code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from automl.engines.runner import run_worker
        run_worker("orphan", Path({str(tmp_path / 'work')!r}), time.monotonic() + 600,
                   env={{"PYTHONPATH": {str(tmp_path / 'mods')!r} + ":" + {os.getcwd()!r}}})
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    pid_file = tmp_path / "work" / "worker.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker)


def test_a_worker_asked_to_stop_before_its_deadline_stops_and_reports_its_start_up(tmp_path):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "sleeper.py").write_text(SLEEPER.replace(
        "for i in range(600):", "from automl.engines.runner import mark_ready\nmark_ready(workdir)\nfor i in range(600):"))
    start = time.monotonic()
    asked = []

    def stop() -> bool:
        asked.append(time.monotonic())
        return time.monotonic() - start > 1.5

    run = run_worker("sleeper", tmp_path / "work", start + 60.0, poll_seconds=0.2, stop=stop, since=start - 1.0,
                     env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "mods"), os.getcwd()])})
    assert run.stopped and time.monotonic() - start < 1.5 + 4.0 and len(asked) >= 3
    # From the spawn to mark_ready(), plus the second the engine spent before the spawn.
    assert run.startup_seconds is not None and 1.0 < run.startup_seconds < 1.0 + 10.0
