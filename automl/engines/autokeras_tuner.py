"""The tuner the AutoKeras worker runs: each trial reported as it ends, the best networks kept,
training stopped in time for the slice.

Which hook, and why not a Keras callback passed to ``fit``: keras-tuner deep-copies the user's
callbacks for every trial (``Tuner.run_trial`` -> ``_deepcopy_callbacks``), so such a callback
only ever sees its own trial, and a trial that fails while being built never calls it at all.
keras-tuner's own tuner hooks see everything: ``on_trial_begin``/``on_trial_end`` run around
every trial, failed ones included (with the traceback in ``trial.message``), and the
``TunerCallback`` it adds to each trial's ``fit`` calls ``on_epoch_end``/``on_batch_end`` with the
trial and its model. So :class:`SliceTuner` subclasses AutoKeras's greedy tuner (the one
``ak.ImageClassifier`` uses) and works in those hooks.

At each epoch's end the spec's metric is computed with scikit-learn on the validation pages
(through :class:`KerasClassifier`, the path the final model predicts by) and written into the
epoch's logs as ``val_<metric>``, the tuner's objective: keras-tuner's best-epoch checkpoint,
its best trial (what ``export_model()`` returns) and the greedy oracle's choices all follow the
metric that picks models in this project rather than ``val_loss``.

AutoKeras has no time budget. Training stops cooperatively (``model.stop_training``) when the
next epoch would end after ``stop_at`` (judged from the last epoch, from the second one on) or,
checked after every batch, once ``stop_at`` has passed; no new trial starts after ``stop_at`` or
when the fastest trial so far would not fit before it;
the search then ends by lowering the oracle's ``max_trials`` to the trials it has (keras-tuner
asks the oracle for a next trial and stops when it says STOPPED; there is no other way in).
"""
from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
from autokeras.tuners import greedy

from automl.engines.autokeras_space import pinned_hyperparameters, starts, uses_pretrained_weights
from automl.engines.keras_model import KerasClassifier
from automl.engines.trialfile import append_line
from automl.evaluate import evaluate
from features.atomic import write_bytes, write_text

__all__ = ["KeptNetworks", "SliceJob", "SliceTuner"]


@dataclass
class SliceJob:
    """What the tuner needs besides AutoKeras's own arguments."""

    x_val: np.ndarray
    y_val: np.ndarray  # class indices
    classes: list[str]
    metric: str
    epochs: int
    stop_at: float  # time.time() by which training must have stopped
    workdir: Path
    candidates: int = 1
    clock: Any = time.time

    @property
    def objective(self) -> str:
        return f"val_{self.metric}"


class KeptNetworks:
    """The best ``size`` finished trials' networks, always on disk as ``best.pkl``.

    ``best.pkl`` is a pickled ``{"entries": [...]}``, best first; each entry has ``trial_id``,
    ``score``, ``description``, ``params``, ``source`` and ``classifier`` (a pickled
    :class:`KerasClassifier`, made once when the trial ends). It is rewritten whole into a
    temporary file and renamed into place, so a kill never leaves a half-written one.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size
        self.entries: list[dict[str, Any]] = []

    def wants(self, score: float | None) -> bool:
        return score is not None and (len(self.entries) < self.size or score > self.entries[-1]["score"])

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        self.entries.sort(key=lambda e: -e["score"])  # stable: on a tie the earlier trial stays ahead
        del self.entries[self.size:]
        self.write()

    def replace_classifier(self, trial_id: str, classifier: bytes, source: str) -> bool:
        for entry in self.entries:
            if entry["trial_id"] == trial_id:
                entry.update(classifier=classifier, source=source)
                self.write()
                return True
        return False

    def write(self) -> None:
        write_bytes(self.path, pickle.dumps({"entries": self.entries}))


class SliceTuner(greedy.Greedy):
    """AutoKeras's greedy tuner with our starts and pins, reporting and stopping as described above.

    ``ak.ImageClassifier`` passes its unknown keyword arguments on to the tuner; ``slice_job``
    (a :class:`SliceJob`) arrives that way.
    """

    def __init__(self, *, slice_job: SliceJob, **kwargs) -> None:
        super().__init__(initial_hps=starts(), hyperparameters=pinned_hyperparameters(), **kwargs)
        self.job = slice_job
        self.kept = KeptNetworks(slice_job.workdir / "best.pkl", slice_job.candidates)
        self.trial_seconds: list[float] = []
        self.first_trial_start: float | None = None
        self.last_trial_end: float | None = None
        self.out_of_time = False  # the search ended because the slice did
        self._trial = _TrialState()

    # --- keras-tuner hooks -----------------------------------------------------------------

    def _try_build(self, hp):
        if uses_pretrained_weights(hp):  # pinned off in the space; this makes a slip fail, not download
            raise keras_tuner.errors.FailedTrialError("pretrained ImageNet weights are a download; never built")
        return super()._try_build(hp)

    def pre_create_trial(self) -> None:
        if self.job.clock() >= self.job.stop_at:  # setup (or the last trial) used the time up
            self.end_search()

    def on_trial_begin(self, trial) -> None:
        super().on_trial_begin(trial)
        self._trial = _TrialState(start=self.job.clock(), params=_active_values(trial.hyperparameters))
        self.first_trial_start = self.first_trial_start or self._trial.start
        _write_json(self.job.workdir / "inflight.json", {
            "trial_id": trial.trial_id, "start": self._trial.start, "params": self._trial.params,
            "description": _block_type(self._trial.params)})

    def on_epoch_begin(self, trial, model, epoch, logs=None) -> None:
        self._trial.epoch_start = self.job.clock()

    def on_batch_end(self, trial, model, batch, logs=None) -> None:
        if self.job.clock() >= self.job.stop_at:
            self._cut(model)

    def on_epoch_end(self, trial, model, epoch, logs=None) -> None:
        state = self._trial
        state.model = model
        score = self._score(model)
        if logs is not None:
            logs[self.job.objective] = math.nan if score is None else score  # keras-tuner's objective
        now = self.job.clock()
        state.epochs.append({"epoch": epoch, "seconds": round(now - state.epoch_start, 3),
                             "val_loss": _number(logs, "val_loss"), "val_accuracy": _number(logs, "val_accuracy"),
                             self.job.objective: score})
        if score is not None and (state.best_score is None or score > state.best_score):
            state.best_score, state.best_weights = score, model.get_weights()
        # The first epoch's time includes building the training graph (~25 s for ResNet50 on 2
        # cores, where its later epochs take 1-2 s on tiny data): no guide to the next one, which
        # the check after every batch covers instead.
        ending = model.stop_training or epoch + 1 >= self.job.epochs  # (early stopping runs before this hook)
        if not ending and epoch > 0 and now + (now - state.epoch_start) > self.job.stop_at:
            self._cut(model)  # the next epoch would end after the slice

    def on_trial_end(self, trial) -> None:
        state = self._trial
        now = self.job.clock()
        seconds = now - state.start
        status, error = self._status(trial)
        description = _describe(state.params, state.model)
        append_line(self.job.workdir / "trials.jsonl", {
            "description": description, "params": state.params, "score": state.best_score, "seconds": seconds,
            "status": status, "error": error,
            "extra": {"trial_id": trial.trial_id, "epochs": state.epochs,
                      "weights": state.model.count_params() if state.model is not None else None}})
        if status == "ok":
            self.trial_seconds.append(seconds)
            if self.kept.wants(state.best_score):
                self.kept.add({"trial_id": trial.trial_id, "score": state.best_score, "description": description,
                               "params": state.params, "source": "best epoch",
                               "classifier": self._classifier_bytes(state, description)})
        (self.job.workdir / "inflight.json").unlink(missing_ok=True)
        super().on_trial_end(trial)
        self.last_trial_end = self.job.clock()
        fastest = min(self.trial_seconds, default=0.0)
        if state.cut or self.job.clock() + fastest > self.job.stop_at:
            self.end_search()

    # --- helpers -------------------------------------------------------------------------------

    def end_search(self) -> None:
        """No new trial: keras-tuner stops once the oracle has ``max_trials`` trials."""
        self.oracle.max_trials = len(self.oracle.trials)
        self.out_of_time = True

    def classifier(self, network, description: str = "") -> KerasClassifier:
        return KerasClassifier(network, len(self.job.classes), description=description)

    def _cut(self, model) -> None:
        model.stop_training = True
        self._trial.cut = True

    def _score(self, model) -> float | None:
        proba = self.classifier(model).predict_proba(self.job.x_val)
        names = np.asarray(self.job.classes, dtype=object)[self.job.y_val]
        score = evaluate(names, proba, self.job.classes).metrics[self.job.metric]
        return None if math.isnan(score) else float(score)

    def _status(self, trial) -> tuple[str, str]:
        if trial.status in (keras_tuner.engine.trial.TrialStatus.FAILED, keras_tuner.engine.trial.TrialStatus.INVALID):
            message = (trial.message or "").strip().splitlines()
            return "failed", "\n".join(message[-3:])[:1000]
        if self._trial.cut:
            return "stopped", ""
        return "ok", ""

    def _classifier_bytes(self, state: _TrialState, description: str) -> bytes:
        """The trial's network at its best epoch (the one its score is from), pickled for inference."""
        state.model.set_weights(state.best_weights)  # the trial is over; keras-tuner reloads from its checkpoint
        return pickle.dumps(self.classifier(state.model, description))


@dataclass
class _TrialState:
    start: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    epoch_start: float = 0.0
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    best_weights: list | None = None
    model: Any = None
    cut: bool = False


def _active_values(hp) -> dict[str, Any]:
    return {name: value for name, value in hp.values.items() if hp.is_active(name)}


def _block_type(params: dict[str, Any]) -> str:
    return str(params.get("image_block_1/block_type", "network"))


def _describe(params: dict[str, Any], model) -> str:
    """One line: block type, the layers in order (repeats folded), weights, optimiser."""
    head = _block_type(params)
    if model is None:
        return f"{head} (not trained)"
    names: list[str] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        names.append(layer.name if isinstance(layer, keras.Model) else type(layer).__name__)
    folded: list[str] = []
    for name in names:
        if folded and folded[-1].split(" x")[0] == name:
            count = int(folded[-1].split(" x")[1]) + 1 if " x" in folded[-1] else 2
            folded[-1] = f"{name} x{count}"
        else:
            folded.append(name)
    optimiser = f"{params.get('optimizer', '?')} lr={params.get('learning_rate', '?')}"
    return f"{head}: {' > '.join(folded)}; {model.count_params():,} weights; {optimiser}"


def _number(logs, key: str) -> float | None:
    value = (logs or {}).get(key)
    return None if value is None or math.isnan(float(value)) else round(float(value), 6)


def _write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, default=str))
