"""What the engines that search in a worker process share: one call's folder, job file, trial
tail, worker run and failure check.

TPOT, Optuna and AutoKeras each run their library in ``python -m <worker_module> <workdir>``
(:func:`automl.engines.runner.run_worker`) and log every trial the worker appends to
``trials.jsonl`` as it appears (:class:`automl.engines.trialfile.TrialTail`). An engine
subclasses :class:`WorkerEngine`, names its worker, and between :meth:`~WorkerEngine._new_call`
and :meth:`~WorkerEngine._run_worker` prepares its own job; :meth:`~WorkerEngine._after_worker`
is the hook for what a stopped worker could not write itself.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from automl.engines.base import EngineReport, TrainingData, TrialLog
from automl.engines.runner import WorkerRun, run_worker
from automl.engines.trialfile import TrialTail

__all__ = ["EngineCall", "WorkerEngine", "wall_clock"]


def wall_clock(monotonic_time: float) -> float:
    """A moment on this process's monotonic clock as a ``time.time()`` value: a worker is
    another process, and a monotonic clock is not shared between processes."""
    return time.time() + (monotonic_time - time.monotonic())


@dataclass
class EngineCall:
    """One ``search`` call: where its worker works, when it began and must end, the labels as indices."""

    workdir: Path
    started: float  # time.monotonic()
    deadline: float  # time.monotonic()
    classes: list[str]
    y: np.ndarray


class WorkerEngine:
    """Base of the worker-based engines. Subclasses set ``name``, ``label`` (as said in messages)
    and ``worker_module``, and may set ``fresh_workdir`` (a call's folder is emptied first: the
    worker would read an earlier search's files as its own)."""

    name: str
    label: str
    worker_module: str
    fresh_workdir = False

    def __init__(self) -> None:
        self.report: EngineReport | None = None
        self._calls = 0
        self._logged = 0  # trials logged by earlier calls: a second call goes on numbering

    def _new_call(self, data: TrainingData, seconds: float) -> EngineCall:
        """Start a call: its clock, and its own folder (a second call in one search must not
        replay the first call's trials file)."""
        started = time.monotonic()
        self._calls += 1
        workdir = data.workdir / self.name / (f"call-{self._calls}" if self._calls > 1 else "")
        if self.fresh_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True, exist_ok=True)
        classes = list(data.classes)
        y = np.array([classes.index(label) for label in data.y], dtype=np.int64)
        return EngineCall(workdir, started, started + seconds, classes, y)

    def _trial_tail(self, call: EngineCall, log_trial: TrialLog) -> TrialTail:
        """What logs the worker's trials as they appear; its ``records`` grow while the worker runs."""
        return TrialTail(call.workdir / "trials.jsonl", log_trial, self.name, first_number=self._logged)

    def _run_worker(self, call: EngineCall, job: dict[str, Any], trials: TrialTail, until: float, *,
                    stop: Callable[[], bool] | None = None, env: dict[str, str] | None = None) -> WorkerRun:
        """Write the job, run the worker until ``until`` (monotonic) while ``trials`` logs its lines,
        and raise when it failed before finishing any (a trial logged is never lost to the raise)."""
        (call.workdir / "job.json").write_text(json.dumps(job))
        run = run_worker(self.worker_module, call.workdir, until, poll=trials.poll, env=env, since=call.started,
                         stop=stop)
        trials.poll(last=True)  # what the worker wrote last; a store still locked now raises
        self._after_worker(call, run, trials)
        self._logged += len(trials.records)
        if not run.stopped and run.returncode not in (0, None) and not trials.records:
            # One line for the console (the first), the worker's last lines after it for the run's tag.
            raise RuntimeError(f"{self.label} worker failed ({run.failure()}); its output is in {run.output_at}\n"
                               f"{run.tail()}")
        return run

    def _after_worker(self, call: EngineCall, run: WorkerRun, trials: TrialTail) -> None:
        """Hook: log what the worker could not (a trial a kill cut off). Nothing by default."""
