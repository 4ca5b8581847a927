"""AutoKeras's image classifier over page tensors, stopped inside its slice, every trial logged.

The pages become tensors here (``tensors``, by default :class:`features.tensors.PageTensors`),
are split into training and validation pages (stratified, with the search's seed), and go to
a worker process (:mod:`automl.engines.autokeras_worker`) that runs ``ak.ImageClassifier``. The
worker reports each trial in ``trials.jsonl`` as it ends (tailed here and logged at once), keeps
the best networks in ``best.pkl`` and stops training itself before the slice ends; the runner
kills it at ``kill_at`` if it has not. Candidates are the kept networks, trained on the training
pages only: retraining on all of them would cost another full fit the slice has no room for.

Time inside a slice: tensors (cached by PageTensors), TensorFlow's import here (~4-6 s, paid up
front because the candidates are Keras networks), then the worker: its own TensorFlow import
(~4-6 s), AutoKeras's setup, the trials, and ``wrapup`` seconds before ``kill_at`` to save the
last trial's network and export the best; after it, a small reserve to load the candidates.
"""
from __future__ import annotations

import importlib
import logging
import math
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from automl.core_use import available_cores
from automl.engines.base import Candidate, EngineReport, TrainingData, TrialLog
from automl.engines.folds import validation_split
from automl.engines.runner import WorkerRun, read_json
from automl.engines.trialfile import TrialTail
from automl.engines.worker_engine import EngineCall, WorkerEngine, wall_clock
from automl.model import ECGModel

__all__ = ["AutoKerasEngine"]

log = logging.getLogger(__name__)

VIEWS = ("page", "leads", "signals")
MIN_SIDE = 32  # AutoKeras's ResNet/EfficientNet blocks upsample anything smaller to 32


class AutoKerasEngine(WorkerEngine):
    """Options come from the experiment spec's ``engines.autokeras`` block.

    max_trials: architectures AutoKeras may try (it stops sooner if the slice ends). epochs:
    training epochs per trial (early stopping may end one sooner). view, size: what
    :class:`~features.tensors.PageTensors` makes of each page, ``size`` = (height, width).
    batch_size: pages per training step. candidates: how many of the best networks are offered
    for the holdout. validation_share: training pages held out to score trials (at least one
    per class). The default view is the layout-proof lead mosaic.
    """

    name, label, worker_module = "autokeras", "AutoKeras", "automl.engines.autokeras_worker"
    fresh_workdir = True  # a previous search's trials must not be read as ours
    resumable = False  # a second call starts AutoKeras's search over (overwrite): only when starved
    startup_estimate = 20.0  # TensorFlow twice (here and in the worker), page tensors, AutoKeras's set-up
    min_trial_seconds = 15.0  # a small network's first epochs, and loading the kept ones

    def __init__(self, max_trials: int = 10, epochs: int = 10, view: str = "leads", size=(64, 96),
                 batch_size: int = 16, candidates: int = 1, validation_share: float = 0.2) -> None:
        self.max_trials = _whole(max_trials, "max_trials")
        self.epochs = _whole(epochs, "epochs")
        self.batch_size = _whole(batch_size, "batch_size")
        self.candidates = _whole(candidates, "candidates")
        if view not in VIEWS:
            raise ValueError(f"autokeras option view must be one of {', '.join(VIEWS)}, got {view!r}")
        self.view = view
        try:
            height, width = (int(side) for side in size)
        except (TypeError, ValueError):
            raise ValueError(f"autokeras option size must be [height, width], got {size!r}") from None
        if min(height, width) < MIN_SIDE:
            raise ValueError(f"autokeras option size: both sides must be at least {MIN_SIDE} pixels, got {size!r}")
        self.size = (height, width)
        share = float(validation_share) if isinstance(validation_share, (int, float)) else math.nan
        if not 0.0 < share < 0.5:
            raise ValueError(f"autokeras option validation_share must be above 0 and below 0.5, got {validation_share!r}")
        self.validation_share = share
        super().__init__()
        self._kept: list[Candidate] = []

    def search(self, data: TrainingData, seconds: float, log_trial: TrialLog) -> list[Candidate]:
        call = self._new_call(data, seconds)
        y, workdir = call.y, call.workdir
        train, val = validation_split(y, self.validation_share, data.seed, engine=self.name)
        from features.cache import default_cache_dir

        tensors = self._tensors()
        # Made on every core through the shared cache; the model keeps a transformer with neither
        # (it must work on any machine).
        x = _checked(tensors.set_params(cache_dir=default_cache_dir(), n_jobs=-1).transform(list(data.paths)), len(y))
        tensors.set_params(cache_dir=None, n_jobs=1)
        np.savez(workdir / "data.npz", x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val])
        _import_keras()
        kill_at = call.deadline - (1.0 + 1.5 * self.candidates)  # loading the candidates after the worker
        # After training stops: the stopped trial's scoring and line, AutoKeras's own reload and save
        # of the best trial, export_model() if time allows, exit. ~2-4 s for a small CNN on 2 cores.
        wrapup = min(15.0, max(5.0, 0.1 * (kill_at - time.monotonic())))
        job = {
            "classes": call.classes, "metric": data.metric, "seed": int(data.seed), "max_trials": self.max_trials,
            "epochs": self.epochs, "batch_size": self.batch_size, "candidates": self.candidates,
            "threads": available_cores(),
            "stop_at": wall_clock(kill_at - wrapup), "kill_at": wall_clock(kill_at),
        }
        trials = self._trial_tail(call, log_trial)
        run = self._run_worker(call, job, trials, kill_at, stop=data.should_stop, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
        done = read_json(workdir / "done.json")
        ending = ("; killed at the end of its slice" if run.stopped
                  else "; stopped itself at the end of its slice" if done.get("out_of_time") else "")
        log.info("autokeras: %d trials (%d ok) in %.0f s%s; worker timings %s", len(trials.records),
                 sum(r["status"] == "ok" for r in trials.records), run.seconds, ending, done)
        self._kept += self._candidates(workdir / "best.pkl", tensors, call.classes, trials.records, x[val], y[val], val)
        shutil.rmtree(workdir / "ak", ignore_errors=True)  # keras-tuner's checkpoints: the kept networks are in best.pkl
        self.report = self._report(seconds, time.monotonic() - call.started, run, done, trials.records)
        return list(self._kept)

    def _after_worker(self, call: EngineCall, run: WorkerRun, trials: TrialTail) -> None:
        if run.stopped or read_json(call.workdir / "done.json").get("out_of_time"):
            _log_cut_trial(call.workdir, trials)

    def _report(self, slice_seconds: float, seconds: float, run, done: dict, records: list[dict]) -> EngineReport:
        out_of_time = run.stopped or bool(done.get("out_of_time"))
        trials = sum(1 for r in records if r.get("extra", {}).get("trial_id"))  # not "no trial started"
        if out_of_time and not trials:
            return EngineReport(self.name, slice_seconds, seconds, 0, "starved",
                                f"no trial: TensorFlow, the page tensors and AutoKeras's set-up took "
                                f"{run.startup_seconds or seconds:.0f} s of the slice", run.startup_seconds)
        if out_of_time:
            return EngineReport(self.name, slice_seconds, seconds, trials, "slice", startup_seconds=run.startup_seconds)
        return EngineReport(self.name, slice_seconds, seconds, trials, "finished",
                            f"its {self.max_trials} trials, or AutoKeras's own stop", run.startup_seconds)

    def _tensors(self):
        from features.tensors import PageTensors

        return PageTensors(view=self.view, size=self.size)

    def _candidates(self, path: Path, tensors, classes: list[str], records: list[dict], x_val: np.ndarray,
                    y_val: np.ndarray, val_pages: np.ndarray | None = None) -> list[Candidate]:
        from automl.calibration import CalibrationSet

        try:
            entries = pickle.loads(path.read_bytes())["entries"]
        except FileNotFoundError:
            return []  # no trial finished inside the slice
        run_ids = {r.get("extra", {}).get("trial_id"): r.get("run_id") for r in records if r["status"] == "ok"}
        candidates = []
        for entry in entries[: self.candidates]:
            try:
                classifier = pickle.loads(entry["classifier"])
            except Exception as exc:  # a damaged network must not cost the search its other results
                log.warning("autokeras: the network of trial %s does not load (%s)", entry["trial_id"], exc)
                continue
            params: dict[str, Any] = dict(entry["params"])
            model = ECGModel(tensors, classifier, classes, engine=self.name, description=entry["description"],
                             params=params)
            calibration = CalibrationSet(model.uncalibrated_proba(x_val), y_val, "validation pages", pages=val_pages)
            candidates.append(Candidate(self.name, model, float(entry["score"]), params,
                                        run_ids.get(entry["trial_id"]), entry["description"], calibration))
        return candidates


def _log_cut_trial(workdir: Path, trials: TrialTail) -> None:
    """The slice ended the search: report the trial a kill cut off, or that none ever started.

    A trial the worker stopped itself is already in ``trials.jsonl`` as "stopped"."""
    inflight = read_json(workdir / "inflight.json")
    if inflight:
        trials.log({"description": f"{inflight.get('description', 'network')} (cut off at the slice's end)",
                    "params": inflight.get("params", {}), "score": None,
                    "seconds": time.time() - float(inflight.get("start", time.time())), "status": "stopped",
                    "extra": {"trial_id": inflight.get("trial_id")}})
    elif not trials.records:
        trials.log({"description": "no trial started: TensorFlow and AutoKeras's setup took the slice",
                    "params": {}, "score": None, "seconds": None, "status": "stopped"})


def _import_keras() -> None:
    """TensorFlow's import (~4-6 s cold), paid before the worker starts rather than kept in reserve."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    importlib.import_module("keras")


def _checked(x, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] != n or x.shape[-1] != 1:
        raise ValueError(f"page tensors must be (pages, height, width, 1) for {n} pages, got {x.shape}")
    return x


def _whole(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"autokeras option {name} must be a whole number >= 1, got {value!r}")
    return int(value)
