"""The Optuna worker process: ``python -m automl.engines.optuna_worker WORKDIR``.

Reads ``WORKDIR/job.json`` (training pages, labels, options, the study's storage and name, the
deadline as a ``time.time()`` value), loads or creates the study, and runs trials until the
deadline. Each trial samples an architecture and its training set-up (:mod:`automl.engines.optuna_space`),
trains it with per-epoch validation reported to the pruner, and appends one line to
``WORKDIR/trials.jsonl`` as it ends (completed, pruned or failed); a completed trial's model is
pickled to ``WORKDIR/models/`` first. The parent stops this process group at the slice's end, so
a trial in flight is lost but nothing already written; the parent then marks it FAILED in the study
(each trial carries this worker's tag, :func:`~automl.engines.optuna_storage.worker_tag`).
"""
from __future__ import annotations

import automl._tf_env  # noqa: F401  (before TensorFlow is imported)

import json
import pickle
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from automl.engines.optuna_storage import WORKER_ATTR, worker_tag
from automl.engines.runner import mark_ready, watch_parent
from automl.engines.trialfile import append_line
from features.atomic import write_bytes

# Epochs without a better validation score before a trial stops: a trial that has stopped
# learning hands its time to the next one (a slice on 2 cores holds few trials).
PATIENCE = 3


def main(workdir: str) -> int:
    root = Path(workdir)
    watch_parent()
    job = json.loads((root / "job.json").read_text())
    import optuna

    from automl.engines.deep_training import configure_tensorflow
    from automl.engines.optuna_space import make_pruner
    from automl.engines.optuna_storage import fail_cut_trials, open_storage

    configure_tensorflow(job["seed"], threads=job.get("threads", 2))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=open_storage(job["storage"]), study_name=job["study_name"], direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=job["seed"]), pruner=make_pruner(job["pruner"], job["max_epochs"]),
    )
    # A worker in this folder before us died with its search (kill -9) and left its trial RUNNING.
    fail_cut_trials(job["storage"], job["study_name"], worker_tag(root),
                    "its worker died before finishing it (the search was killed)")
    for params in job.get("enqueue", []):
        study.enqueue_trial(params, skip_if_exists=False)
    objective = _Objective(job, root)
    startup = mark_ready(root)
    # A trial needs min_trial_seconds of the slice left to be worth starting (building and one
    # epoch of a small network take a few seconds on 2 cores).
    remaining = job["deadline"] - time.time()
    done = {"startup_seconds": startup, "left_after_startup": remaining}
    if remaining < job["min_trial_seconds"]:
        done.update(ended="starved", trials=0, trials_in_study=len(study.trials))
    else:
        study.optimize(objective, n_trials=job.get("max_trials"), timeout=remaining - job["min_trial_seconds"],
                       catch=(Exception,), gc_after_trial=True)
        capped = job.get("max_trials") is not None and objective.calls >= job["max_trials"]
        done.update(ended="finished" if capped else "slice", trials=objective.calls,
                    trials_in_study=len(study.trials))
    write_bytes(root / "done.json", json.dumps(done).encode())
    return 0


class _Objective:
    """One trial: tensors for the sampled view, a network, training, the line in trials.jsonl."""

    def __init__(self, job: dict, root: Path) -> None:
        self.job, self.root = job, root
        self.paths = job["paths"]
        self.y = np.asarray(job["y"], dtype=np.int64)
        self.train_idx = np.asarray(job["train_idx"], dtype=np.int64)
        self.val_idx = np.asarray(job["val_idx"], dtype=np.int64)
        self._tensors: dict[tuple, np.ndarray] = {}
        self.calls = 0
        self.tag = worker_tag(root)
        (root / "models").mkdir(exist_ok=True)

    def __call__(self, trial) -> float:
        import optuna

        from automl.engines.optuna_space import sample_setup

        started = time.time()
        self.calls += 1
        # Whose trial this is: when the slice's end cuts it, the search marks it FAILED.
        trial.set_user_attr(WORKER_ATTR, self.tag)
        setup = sample_setup(trial, self.job)
        epochs: list[dict] = []
        record = {"description": setup.description, "params": trial.params, "score": None, "status": "failed",
                  "error": "", "extra": {"epochs": epochs, "study_trial": trial.number,
                                         "study": self.job["study_name"]}}
        try:
            score = self._train(trial, setup, record, epochs)
            record.update(score=score, status="ok")
            return score
        except optuna.TrialPruned:
            record["status"] = "pruned"
            record["score"] = max((e["val_score"] for e in epochs), default=None)
            raise
        except Exception as exc:  # reported in one line; the study goes on with other choices
            record["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            record["extra"]["traceback"] = traceback.format_exc(limit=5)
            raise
        finally:
            record["seconds"] = time.time() - started
            # The study keeps the curves beside its intermediate values (the validation score per
            # epoch, reported for pruning), so a resumed study and optuna-dashboard show them too;
            # the line carries them as well, since the search logs from the line while the worker
            # still holds the study's storage.
            trial.set_user_attr("epochs", epochs)
            append_line(self.root / "trials.jsonl", record)

    def _train(self, trial, setup, record: dict, epochs: list[dict]) -> float:
        import optuna

        from automl.engines.deep_training import train_network
        from automl.engines.keras_model import KerasClassifier
        from automl.engines.networks import build_network, require_weights
        from automl.model import ECGModel

        if setup.family == "transfer":
            require_weights(setup.backbone, self.job.get("weights_dir"))  # before any tensor is made
        x = self._tensors_for(setup)
        network = build_network(setup.family, x.shape[1:], len(self.job["classes"]), width=setup.width,
                                depth=setup.depth, dropout=setup.dropout, weights_dir=self.job.get("weights_dir"),
                                backbone=setup.backbone)

        def on_epoch(report) -> None:
            epochs.append({"epoch": report.epoch, "loss": report.loss, "val_loss": report.val_loss,
                                     "val_score": report.val_score, "seconds": report.seconds})
            trial.report(report.val_score, report.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {report.epoch + 1}")

        result = train_network(
            network, x[self.train_idx], self.y[self.train_idx], x[self.val_idx], self.y[self.val_idx],
            metric=self.job["metric"], epochs=setup.epochs, batch_size=setup.batch_size,
            learning_rate=setup.learning_rate, class_weights=setup.class_weights, augment=setup.augment,
            fine_tune_after=setup.fine_tune_after, unfreeze=_unfreezer(setup), fine_tune_factor=setup.fine_tune_factor,
            patience=PATIENCE, seed=self.job["seed"] + trial.number,
            deadline=self.job["deadline"] - 2.0, on_epoch=on_epoch,
        )
        if result.best_epoch < 0:
            raise RuntimeError("no epoch gave a finite validation score")
        # The model's transformer has no cache folder: it must work on any machine.
        classifier = KerasClassifier(network, len(self.job["classes"]), description=setup.description)
        model = ECGModel(setup.features(None), classifier, self.job["classes"], engine="optuna",
                         description=setup.description, params=trial.params)
        path = self.root / "models" / f"trial-{trial.number:05d}.pkl"
        # The best epoch's validation probabilities: what the search calibrates the network on.
        write_bytes(path.with_suffix(".val.npz"), _npz(proba=classifier.predict_proba(x[self.val_idx]),
                                                       y=self.y[self.val_idx]))
        write_bytes(path, pickle.dumps(model))
        record["model"] = str(path)
        record["extra"]["stopped_early"] = result.stopped_by_deadline
        record["extra"]["stopped_by_patience"] = result.stopped_early
        return result.best_score

    def _tensors_for(self, setup) -> np.ndarray:
        key = setup.tensor_key
        if key not in self._tensors:
            # Pages are made on every core the worker has (TensorFlow waits for them anyway).
            transformer = setup.features(self.job.get("cache_dir")).set_params(n_jobs=self.job.get("threads", 2))
            self._tensors[key] = transformer.transform(self.paths)
        return self._tensors[key]


def _unfreezer(setup):
    """What fine-tuning unfreezes: the last ``unfreeze_blocks`` blocks of SmartECG's backbone (None: all)."""
    if setup.unfreeze_blocks is None:
        return None
    from automl.engines.backbones import unfreeze_last_blocks
    from automl.engines.networks import backbone_layer

    return lambda network: unfreeze_last_blocks(backbone_layer(network), setup.unfreeze_blocks)


def _npz(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
