"""The AutoKeras worker process: ``python -m automl.engines.autokeras_worker WORKDIR``.

Reads ``WORKDIR/job.json`` and ``WORKDIR/data.npz`` (page tensors and class indices, already
split into training and validation pages), runs ``ak.ImageClassifier`` with
:class:`~automl.engines.autokeras_tuner.SliceTuner`, and leaves behind, as it goes:

- ``trials.jsonl``: one line per trial as it ends (see :mod:`automl.engines.trialfile`);
- ``best.pkl``: the best networks so far (see :class:`~automl.engines.autokeras_tuner.KeptNetworks`);
- ``inflight.json``: the trial under way, if any (what a kill cut off);
- ``done.json``: timings (import, setup before the first trial, search, export) and whether the
  slice's end stopped the search, once it has ended on its own or stopped itself in time.

The engine (:mod:`automl.engines.autokeras_engine`) kills this process group at its deadline
as a last resort; the tuner stops training before that. Nothing here talks to MLflow.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from automl.engines.runner import mark_ready, watch_parent
from features.atomic import write_text


def main(workdir: str) -> int:
    started = time.time()
    path = Path(workdir)
    watch_parent()
    job = json.loads((path / "job.json").read_text())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the engine sets it too; here for runs by hand
    # TensorFlow takes ~4-6 s to import on 2 cores: it is part of the slice, and why the engine
    # reads the slice from its own start, not from when this process is ready.
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(job["threads"]))
    tf.config.threading.set_inter_op_parallelism_threads(1)  # one op at a time; each uses every thread
    keras.utils.set_random_seed(int(job["seed"]))
    import autokeras as ak
    import keras_tuner

    from automl.engines.autokeras_tuner import SliceJob, SliceTuner
    from automl.engines.deep_training import balanced_class_weights

    timings = {"import": time.time() - started}
    data = np.load(path / "data.npz")
    n_classes = len(job["classes"])
    slice_job = SliceJob(x_val=data["x_val"], y_val=data["y_val"], classes=job["classes"], metric=job["metric"],
                         epochs=int(job["epochs"]), stop_at=float(job["stop_at"]), workdir=path,
                         candidates=int(job["candidates"]))
    classifier = ak.ImageClassifier(
        num_classes=n_classes, max_trials=int(job["max_trials"]), directory=str(path / "ak"), overwrite=True,
        seed=int(job["seed"]), objective=keras_tuner.Objective(slice_job.objective, direction="max"),
        tuner=SliceTuner, slice_job=slice_job)
    tuner = classifier.tuner
    search_start = time.time()
    timings["init"] = search_start - started - timings["import"]
    mark_ready(path)
    try:
        classifier.fit(
            data["x_train"], _targets(data["y_train"], n_classes),
            validation_data=(data["x_val"], _targets(data["y_val"], n_classes)),
            epochs=int(job["epochs"]), batch_size=int(job["batch_size"]), verbose=0,
            # AutoKeras adds this same early stopping itself when none is given, and then, after
            # the search, retrains the best architecture from scratch: an unbounded extra fit the
            # slice has no room for. Passing it here keeps the search as it was and skips that.
            callbacks=[keras.callbacks.EarlyStopping(patience=10, min_delta=1e-4)],
            # Every class weighs the same in the loss, as in the Optuna engine's default: without
            # it a network on real pages can ignore MI (about 4% of them) at little cost.
            class_weight=balanced_class_weights(data["y_train"], n_classes),
        )
    except Exception:  # trials already reported stay reported; the engine decides what is usable
        if tuner.out_of_time and not tuner.oracle.trials:
            # Setup took the slice, so no trial ran and AutoKeras's end-of-search reload of the best
            # trial had nothing to load: a stop, not a failure.
            _write_done(path, {**timings, "setup": time.time() - search_start, "trials": 0}, out_of_time=True)
            return 0
        traceback.print_exc()
        _write_done(path, timings, error=traceback.format_exc(limit=3))
        return 1
    timings["setup"] = (tuner.first_trial_start or search_start) - search_start
    timings["search"] = time.time() - search_start
    timings["trials"] = len(tuner.oracle.trials)
    timings["export"] = _export_best(classifier, tuner, job, search_end=time.time())
    _write_done(path, timings, out_of_time=tuner.out_of_time)
    return 0


def _targets(y, n_classes: int):
    """One-hot columns for 3+ classes (AutoKeras then adds no label encoder, so output column i is
    class i whichever classes the training pages happen to hold); 0/1 in one column for two."""
    import numpy as np

    y = np.asarray(y, dtype=np.int64)
    return np.eye(n_classes, dtype=np.float32)[y] if n_classes > 2 else y.reshape(-1, 1)


def _export_best(classifier, tuner, job: dict, search_end: float) -> float | None:
    """Replace the best kept network by ``export_model()``'s when it is the same trial and time allows.

    Both are the best trial's network at its best epoch; export_model() rebuilds it from
    keras-tuner's checkpoint, which takes about as long as the tuner's own reload at the end of
    the search did, so it is skipped when that would not fit before ``kill_at``.
    """
    import pickle

    if not tuner.kept.entries:
        return None
    reload_seconds = search_end - (tuner.last_trial_end or search_end)
    if time.time() + 2 * reload_seconds + 1.0 > float(job["kill_at"]):
        return None
    best = tuner.oracle.get_best_trials(1)
    if not best or best[0].trial_id != tuner.kept.entries[0]["trial_id"]:
        return None  # keras-tuner's best is a trial we cut short (it scores what it reached)
    start = time.time()
    network = classifier.export_model()
    blob = pickle.dumps(tuner.classifier(network, tuner.kept.entries[0]["description"]))
    tuner.kept.replace_classifier(best[0].trial_id, blob, "export_model")
    return time.time() - start


def _write_done(path: Path, timings: dict, *, out_of_time: bool = False, error: str = "") -> None:
    write_text(path / "done.json", json.dumps({**timings, "out_of_time": out_of_time, "error": error}))


if __name__ == "__main__":
    status = main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk by now; TensorFlow's interpreter teardown takes ~2 s more, time the
    # slice does not have.
    os._exit(status)
