"""What every engine receives and returns.

An engine gets :class:`TrainingData`, a number of seconds and a :class:`TrialLog`; it returns
:class:`Candidate` models, fitted and ready for the holdout. It reports every trial it evaluated
through the log as it goes (the controller turns each into a nested MLflow run), so trials
finished before a stop are never lost. Engines do not parse command lines and do not touch
MLflow themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from automl.calibration import CalibrationSet
from automl.model import ECGModel

__all__ = ["Candidate", "Engine", "EngineReport", "TrainingData", "Trial", "TrialLog"]


@dataclass
class TrainingData:
    """The pages an engine may learn from; the holdout is never in here.

    ``X`` holds the feature vectors of ``paths`` (from ``features``, a
    :class:`features.handcrafted.PageFeatures` that needs no fitting), ``y`` the class names.
    """

    paths: list[str]
    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    features: Any
    metric: str
    seed: int
    workdir: Path
    experiment: str = "smartecg"  # the spec's name: engines with persistent studies name them after it
    # Asked about once a second while a worker runs: True when the search wants this engine to
    # stop now and keep what it has (it trails the others: automl.allocation). None: never.
    should_stop: Callable[[], bool] | None = None


@dataclass
class Trial:
    """One evaluated configuration, as the engine saw it (cross-validated on training data)."""

    engine: str
    number: int
    description: str  # pipeline or architecture, readable
    params: dict[str, Any]
    score: float | None  # the engine's validation score of the spec's metric; None when it failed
    fit_seconds: float | None
    status: str  # "ok", "failed", "timeout", "pruned" (by the engine's pruner) or "stopped" (slice ended)
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class TrialLog(Protocol):
    def __call__(self, trial: Trial) -> str | None:
        """Record a trial; returns its tracking run id (or None when not tracked)."""


@dataclass
class Candidate:
    """A fitted model an engine offers for the holdout comparison.

    ``calibration``: its probabilities on training pages it was not fitted on (a network's
    validation pages, a pipeline's out-of-fold predictions), for the search to calibrate it;
    None when the engine had no time for them.
    """

    engine: str
    model: ECGModel
    validation_score: float
    params: dict[str, Any]
    run_id: str | None
    description: str = ""
    calibration: CalibrationSet | None = None


@dataclass
class EngineReport:
    """How one call of an engine ended: what the search plans the rest of its budget on, and says.

    ``ended``: "finished" (the engine ended by itself: its trials cap, its own stopping rule),
    "slice" (the slice's end stopped it: more time would have been used), "starved" (no trial:
    what was left of the slice after the worker's start-up was too short for one), "yielded"
    (the search stopped it early, its scores trailing the other engines': the rest of its slice
    went to them).
    ``startup_seconds``: from the worker's spawn to its first trial (imports, set-up), measured.
    ``core_share``: the share of the machine's cores busy during the call (set by the search
    from :class:`automl.core_use.CoreUse`), where the idle time of a search shows up.
    """

    engine: str
    slice_seconds: float
    seconds: float
    trials: int
    ended: str
    reason: str = ""
    startup_seconds: float | None = None
    core_share: float | None = None

    def line(self) -> str:
        """``optuna: 3 trials in 41 s of a 45 s slice (the slice's end stopped it), cores 93% busy``."""
        trials = f"{self.trials} trial" + ("" if self.trials == 1 else "s")
        why = self.reason or {"finished": "ended by itself", "slice": "the slice's end stopped it"}.get(self.ended, "")
        busy = f", cores {self.core_share:.0%} busy" if self.core_share is not None else ""
        return f"{self.engine}: {trials} in {self.seconds:.0f} s of a {self.slice_seconds:.0f} s slice ({why}){busy}"


class Engine(Protocol):
    """What the search calls. Besides ``name`` and ``search``, an engine may say (the search
    reads each with a default when absent):

    - ``report``: an :class:`EngineReport` of its last call (default: none; the time it used);
    - ``startup_estimate``: seconds its worker takes to start, until a measurement exists (0);
    - ``min_trial_seconds``: the least time after start-up in which a trial can finish (5);
    - ``resumable``: a second call goes on from the first (a persistent study) rather than
      starting over, so time left at the end of a search is worth giving back to it (False).
    """

    name: str

    def search(self, data: TrainingData, seconds: float, log: TrialLog) -> list[Candidate]:
        """Search for at most ``seconds``, log every trial, return the best fitted candidates.

        A second call on the same engine returns the best of both calls' candidates."""
