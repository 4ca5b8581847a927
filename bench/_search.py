"""``smartecg search`` run as a user runs it (a subprocess, timed from outside), for the benchmarks."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from automl.cli import smartecg_command

__all__ = ["smartecg_command", "timed_search"]


def timed_search(data: Path, budget_seconds: float, experiment: str, env: dict, cwd: Path,
                 extra: list[str] | None = None):
    """(wall seconds, the finished process) of ``smartecg search --quiet`` on ``data``; ``extra``
    arguments go on its command line."""
    start = time.perf_counter()
    done = subprocess.run(smartecg_command() + ["search", "--data", str(data), "--budget", f"{budget_seconds:.0f}s",
                                                "--experiment", experiment, "--quiet", *(extra or [])],
                          env=env, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, done
