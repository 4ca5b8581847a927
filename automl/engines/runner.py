"""Run an engine's worker in its own process group and stop it, whole, at the end of its slice.

Libraries such as TPOT keep their own clocks and overrun them, and start helper processes (Dask
workers) of their own. So the worker runs as ``python -m <module> <workdir>`` in a new session;
at the deadline its whole process group gets SIGTERM, then SIGKILL after a grace period. The
worker writes what it finishes into ``workdir`` as it goes, so a stop loses only the trial in
flight. A worker also watches its parent and stops its group when the parent dies (``kill -9`` of
a search must not leave a search running on).

A worker calls :func:`mark_ready` once its imports and set-up are done and it is about to run
its first trial; the time from the spawn to that mark is the worker's start-up
(``WorkerRun.startup_seconds``), which the search counts when it plans the next slices.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from automl.library_log import append_worker_output
from features.atomic import write_text

__all__ = ["WorkerRun", "mark_ready", "read_json", "run_worker", "watch_parent"]

GRACE_SECONDS = 3.0


@dataclass
class WorkerRun:
    returncode: int | None
    stopped: bool  # cut off at the deadline, or when ``stop`` asked
    seconds: float
    log_path: Path
    startup_seconds: float | None = None  # spawn to mark_ready(); None when the worker never got there
    output_at: Path | None = None  # where a user finds the worker's output: the command's library log

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def failure(self) -> str:
        """What the worker died of, in one line: its exit code or signal, and the exception its
        last Python traceback ended with (the lines around it are mostly TensorFlow's)."""
        code = self.returncode
        how = f"exit {code}"
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                pass
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return how
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
        for line in lines[starts[-1] + 1:] if starts else ():
            if line.strip() and not line.startswith((" ", "\t")):  # a traceback's frames are indented
                return f"{how}: {line.strip()[:300]}"
        return how


def run_worker(module: str, workdir: Path, deadline: float, *, poll: Callable[[], None] | None = None,
               poll_seconds: float = 1.0, env: dict[str, str] | None = None,
               clock: Callable[[], float] = time.monotonic, since: float | None = None,
               stop: Callable[[], bool] | None = None) -> WorkerRun:
    """Run ``python -m module workdir`` until it exits or ``deadline`` (on ``clock``) passes.

    ``poll`` runs about every ``poll_seconds`` while the worker works (to log finished trials
    as they appear). The worker's output goes to ``workdir/worker.log``, never the terminal, and
    when it ends into the command's library log (:mod:`automl.library_log`). ``since`` (on ``clock``):
    when the engine's call began, so that its start-up counts the engine's own preparation too.
    ``stop``: asked after every poll; True stops the worker as the deadline would.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "worker.log"
    start = clock()
    (workdir / _READY).unlink(missing_ok=True)
    # The wall clock, not a monotonic one: the worker reads it in another process.
    child_env = {**os.environ, **(env or {}), "SMARTECG_PARENT_PID": str(os.getpid()),
                 "SMARTECG_SPAWNED_AT": repr(time.time())}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, str(workdir)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=child_env, start_new_session=True)
        stopped = False
        try:
            while True:
                try:
                    proc.wait(timeout=max(0.05, min(poll_seconds, deadline - clock())))
                    break
                except subprocess.TimeoutExpired:
                    pass
                if poll is not None:
                    poll()
                if clock() >= deadline or (stop is not None and stop()):
                    stopped = True
                    _stop_group(proc)
                    break
        finally:
            if proc.poll() is None:  # an exception or Ctrl-C in the parent: the worker goes too
                _stop_group(proc, grace=0.5)
    startup = _startup_seconds(workdir)
    if startup is not None and since is not None:
        startup += start - since
    output_at = append_worker_output(log_path, f"{module} (exit {proc.returncode})")
    return WorkerRun(proc.returncode, stopped, clock() - start, log_path, startup, output_at)


_READY = "ready.json"


def mark_ready(workdir: str | os.PathLike) -> float | None:
    """In a worker: imports and set-up are done, trials start now. Returns the start-up seconds."""
    spawned = float(os.environ.get("SMARTECG_SPAWNED_AT", "nan"))
    seconds = time.time() - spawned if spawned == spawned else None
    write_text(Path(workdir) / _READY, json.dumps({"startup_seconds": seconds}))
    return seconds


def _startup_seconds(workdir: Path) -> float | None:
    seconds = read_json(workdir / _READY).get("startup_seconds")
    return float(seconds) if isinstance(seconds, (int, float)) else None


def read_json(path: Path) -> dict:
    """A JSON file a worker left behind, or {} when it is missing or cut short."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _stop_group(proc: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:
                # The leader is gone; its helpers (same group) may not be.
                _kill_group_quietly(proc.pid)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_group_quietly(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def watch_parent(interval: float = 1.0) -> None:
    """In a worker: stop this whole process group as soon as the parent search process is gone."""
    parent = int(os.environ.get("SMARTECG_PARENT_PID", "0") or 0)
    if parent <= 0:
        return

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:  # re-parented: the search died without stopping us
                _kill_group_quietly(os.getpgrp())
                os._exit(1)

    threading.Thread(target=watch, name="smartecg-parent-watch", daemon=True).start()
