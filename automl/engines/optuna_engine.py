"""Optuna over deep architectures on page tensors, stopped at the end of its slice.

The study runs in a worker process group (:mod:`automl.engines.optuna_worker`) and persists in
an Optuna storage (by default ``sqlite:///mlruns/optuna.db`` beside MLflow's store), so the next
search on the same experiment resumes it: the sampler starts from every trial so far. The parent
tails the worker's ``trials.jsonl`` and logs each trial (with its per-epoch curves) as it ends;
when the worker is gone, the best completed trials' networks, trained on the engine's training
part, become candidates. Trials are validated on a stratified share of the search's training
pages, never on the holdout.
"""
from __future__ import annotations

import logging
import pickle
import time
from pathlib import Path

import numpy as np

from automl.engines.backbones import BACKBONE_VIEWS, backbone_dir, find_backbone
from automl.engines.base import Candidate, EngineReport, TrainingData, TrialLog
from automl.engines.folds import validation_split
from automl.engines.networks import FAMILIES
from automl.engines.optuna_space import DEFAULT_BACKBONES, conflicting_choices, space_choices
from automl.engines.optuna_storage import fail_cut_trials, worker_tag
from automl.engines.runner import WorkerRun, read_json
from automl.engines.trialfile import TrialTail
from automl.engines.worker_engine import EngineCall, WorkerEngine, wall_clock

__all__ = ["OptunaEngine", "default_storage", "default_study_name"]

log = logging.getLogger(__name__)

_VIEWS = ("page", "leads")
# A trial needs this much of the slice left after the worker's start-up to be worth starting
# (building and one epoch of a small network take a few seconds on 2 cores).
MIN_TRIAL_SECONDS = 8.0


def default_storage() -> str:
    """``sqlite:///<cwd>/mlruns/optuna.db``: beside MLflow's default store, so both persist together."""
    path = Path.cwd() / "mlruns" / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class OptunaEngine(WorkerEngine):
    """Options come from the experiment spec's ``engines.optuna`` block.

    families: architectures to try (cnn, resnet, vgg, efficientnet, transfer, conv1d). views:
    image inputs (``page``, ``leads``). heights: input heights in px (width follows the page's
    aspect). signal_lengths: samples per lead for conv1d. min_epochs/max_epochs: the epochs range
    searched. pruner: median, hyperband or none. storage: an Optuna storage URL (default
    :func:`default_storage`); study: its study name (default: :func:`default_study_name`). candidates:
    how many of the best trials go to the holdout. validation_share: training pages kept for
    per-epoch validation. weights_dir: where pretrained backbones (``smartecg pretrain --out``) or
    ImageNet weights are for ``transfer`` (backbones are also looked for in ``$SMARTECG_CACHE/pretrained``).
    backbones: what ``transfer`` starts from: ``leads``, ``signals`` (SmartECG's own) and ``imagenet``.
    max_trials: stop after this many trials in this search (None: the slice decides).
    enqueue: parameter sets to try first (a known-good configuration, or a test's bad one).
    """

    name, label, worker_module = "optuna", "Optuna", "automl.engines.optuna_worker"
    resumable = True  # the study persists: a second call goes on from every trial so far
    startup_estimate = 12.0  # TensorFlow and Optuna imports, the study opened; until measured here
    min_trial_seconds = MIN_TRIAL_SECONDS + 5.0  # a trial, and the load reserve after the worker

    def __init__(self, families=("cnn", "resnet", "vgg", "conv1d", "efficientnet", "transfer"), views=_VIEWS,
                 heights=(48, 64, 96), signal_lengths=(128, 256), min_epochs: int = 3, max_epochs: int = 15,
                 pruner: str = "median", storage: str | None = None, study: str | None = None, candidates: int = 2,
                 validation_share: float = 0.2, weights_dir: str | None = None, max_trials: int | None = None,
                 enqueue=(), threads: int = 2, backbones=DEFAULT_BACKBONES) -> None:
        unknown = sorted(set(families) - set(FAMILIES)) + sorted(set(views) - set(_VIEWS))
        if unknown or not families or not views:
            raise ValueError(f"optuna options: unknown or no families/views {unknown or ''}; families are "
                             f"{', '.join(FAMILIES)}, views {', '.join(_VIEWS)}")
        if not 1 <= int(min_epochs) <= int(max_epochs) or not 0.05 <= float(validation_share) <= 0.5 \
                or int(candidates) < 1 or min(heights) < 16:
            raise ValueError("optuna options: 1 <= min_epochs <= max_epochs, 0.05 <= validation_share <= 0.5, "
                             "candidates >= 1, heights >= 16 px")
        if not backbones or set(backbones) - {*BACKBONE_VIEWS, "imagenet"}:
            raise ValueError(f"optuna option backbones must be among {', '.join(BACKBONE_VIEWS)}, imagenet; "
                             f"got {list(backbones)}")
        if pruner not in ("median", "hyperband", "none"):
            raise ValueError(f"optuna options: pruner must be median, hyperband or none, got {pruner!r}")
        self.families, self.views = list(families), list(views)
        self.heights, self.signal_lengths = [int(h) for h in heights], [int(n) for n in signal_lengths]
        self.min_epochs, self.max_epochs = int(min_epochs), int(max_epochs)
        self.pruner, self.storage, self.study = pruner, storage, study
        self.candidates, self.validation_share = int(candidates), float(validation_share)
        self.weights_dir, self.max_trials = weights_dir, max_trials
        self.enqueue, self.threads = [dict(p) for p in enqueue], int(threads)
        self.backbones = list(backbones)
        super().__init__()
        self._records: list[dict] = []
        self._val_idx: np.ndarray | None = None  # the validation pages (the same split in every call)

    def search(self, data: TrainingData, seconds: float, log_trial: TrialLog) -> list[Candidate]:
        from features.cache import default_cache_dir

        trials_left = None if self.max_trials is None else self.max_trials - self._logged
        if trials_left is not None and trials_left <= 0:
            self.report = EngineReport(self.name, seconds, 0.0, 0, "finished", f"its cap of {self.max_trials} trials "
                                       "was reached in an earlier call")
            return self._best(self._records)
        # A second call in one search resumes the study (in its own folder).
        call = self._new_call(data, seconds)
        train_idx, val_idx = validation_split(call.y, self.validation_share, data.seed, engine=self.name)
        self._val_idx = val_idx
        load_reserve = min(0.1 * seconds, 5.0)  # unpickling the best networks, after the worker
        job = {
            "paths": list(map(str, data.paths)), "y": call.y.tolist(), "classes": call.classes,
            "metric": data.metric, "seed": data.seed, "train_idx": train_idx.tolist(), "val_idx": val_idx.tolist(),
            "families": self.families, "views": self.views, "heights": self.heights,
            "signal_lengths": self.signal_lengths, "min_epochs": self.min_epochs, "max_epochs": self.max_epochs,
            "pruner": self.pruner, "storage": self.storage_url(), "weights_dir": self.weights_dir,
            "backbones": self.backbones, "max_trials": trials_left,
            "threads": self.threads, "cache_dir": str(default_cache_dir()),
            "min_trial_seconds": MIN_TRIAL_SECONDS,
        }
        job["study_name"] = self.study_name(data.experiment)
        study = _check_study(job)
        job["enqueue"] = (self.enqueue + self._pretrained_first(study)) if self._calls == 1 else []
        job["deadline"] = wall_clock(call.deadline - load_reserve)
        trials = self._trial_tail(call, log_trial)
        run = self._run_worker(call, job, trials, call.deadline - load_reserve, stop=data.should_stop)
        self._records += trials.records
        self.report = self._report(seconds, time.monotonic() - call.started, run, trials.records,
                                   read_json(call.workdir / "done.json"))
        return self._best(self._records)

    def _after_worker(self, call: EngineCall, run: WorkerRun, trials: TrialTail) -> None:
        """The trial the worker was in when it stopped stays RUNNING in the study: it is FAILED now."""
        reason = ("cut at the end of its slice" if run.stopped
                  else f"its worker ended before finishing it (exit {run.returncode})")
        job = read_json(call.workdir / "job.json")
        try:
            fail_cut_trials(job["storage"], job["study_name"], worker_tag(call.workdir), reason)
        except Exception as exc:  # bookkeeping: never fail the engine's trials over it
            log.warning("optuna: a trial cut off in %s could not be marked FAILED in the study (%s); the next "
                        "worker in that folder does it", job["study_name"], str(exc).splitlines()[0][:200])

    def _report(self, slice_seconds: float, seconds: float, run, records: list[dict], done: dict) -> EngineReport:
        ended = "slice" if run.stopped else done.get("ended", "finished")
        reason = ""
        if not records and (run.stopped or ended == "starved"):
            ended = "starved"
            reason = (f"no trial: the worker's start-up took {run.startup_seconds:.0f} s and left "
                      f"{done.get('left_after_startup', 0):.0f} s, less than the {MIN_TRIAL_SECONDS:.0f} s "
                      "a trial needs"
                      if run.startup_seconds is not None else
                      f"no trial: the worker was still starting (TensorFlow, the study) when its {slice_seconds:.0f} s "
                      "slice ended")
        elif ended == "finished" and self.max_trials is not None and self._logged >= self.max_trials:
            reason = f"its cap of {self.max_trials} trials"
        return EngineReport(self.name, slice_seconds, seconds, len(records), ended, reason, run.startup_seconds)

    def study_name(self, experiment: str) -> str:
        """The study this engine adds trials to: the ``study`` option, else one named after its choices."""
        return self.study or default_study_name(experiment, {"families": self.families, "views": self.views,
                                                             "heights": self.heights,
                                                             "signal_lengths": self.signal_lengths,
                                                             "backbones": self.backbones})

    def _pretrained_first(self, study) -> list[dict]:
        """A transfer trial from a pretrained backbone, first in a study that has none yet: on two
        cores it is the network most likely to learn within a slice (frozen features, a small head)."""
        if "transfer" not in self.families or (study is not None and any(
                t.params.get("family") == "transfer" for t in study.get_trials(deepcopy=False))):
            return []
        for view in self.backbones:
            if view in BACKBONE_VIEWS and find_backbone(view, self.weights_dir) is not None:
                return [{"family": "transfer", "backbone": view, "unfreeze_blocks": 1,
                         "epochs": max(self.min_epochs, min(self.max_epochs, 8))}]
        log.warning("optuna: no pretrained backbone (%s) in %s: transfer trials fail until `smartecg pretrain` has "
                    "made one", ", ".join(v for v in self.backbones if v in BACKBONE_VIEWS), backbone_dir(self.weights_dir))
        return []

    def storage_url(self) -> str:
        return self.storage or default_storage()

    def trial_count(self, experiment: str) -> int:
        """Trials the study holds so far (0 when it does not exist yet)."""
        study = _stored_study(self.study_name(experiment), self.storage_url())
        return 0 if study is None else len(study.get_trials(deepcopy=False))

    def _best(self, records: list[dict]) -> list[Candidate]:
        done = [r for r in records if r["status"] == "ok" and r.get("model") and r.get("score") is not None]
        done.sort(key=lambda r: -r["score"])
        candidates = []
        for record in done[: self.candidates]:
            try:
                model = pickle.loads(Path(record["model"]).read_bytes())
            except Exception as exc:  # a model file cut short by the stop: the next best one serves
                log.warning("optuna: the model of trial %d could not be loaded (%s)", record["number"], exc)
                continue
            candidates.append(Candidate(self.name, model, float(record["score"]), record["params"],
                                        record.get("run_id"), record["description"],
                                        _validation_set(Path(record["model"]).with_suffix(".val.npz"), self._val_idx)))
        return candidates



def _validation_set(path: Path, val_idx: np.ndarray | None):
    """The trial's best-epoch probabilities on its validation pages, for calibration; None if missing."""
    from automl.calibration import CalibrationSet

    try:
        with np.load(path) as saved:
            return CalibrationSet(saved["proba"], saved["y"], "validation pages (the network's best epoch)",
                                  pages=val_idx)
    except (OSError, KeyError, ValueError):
        return None


def default_study_name(experiment: str, job: dict) -> str:
    """``<experiment>-optuna-<hash of the spec's choices>``: the same spec resumes its study, and a
    spec with other families, views or sizes starts its own (Optuna cannot change a study's choices)."""
    from features.cache import config_hash

    return f"{experiment}-optuna-{config_hash(space_choices(job))[:8]}"


def _stored_study(name: str, storage_url: str):
    """The study as stored, or None when it does not exist yet."""
    import optuna

    from automl.engines.optuna_storage import open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage_url))
    except KeyError:
        return None


def _check_study(job: dict):
    """The stored study (None when new); refuses, in one line, one whose stored choices differ from the
    spec's (every trial would fail)."""
    from automl.engines.optuna_storage import shown_storage

    study = _stored_study(job["study_name"], job["storage"])
    if study is None:
        return None  # a new study: the worker creates it
    conflicts = conflicting_choices(study, job)
    if conflicts:
        raise ValueError(f"Optuna study {job['study_name']!r} in {shown_storage(job['storage'])} was searched with "
                         f"other choices ({'; '.join(conflicts)}): keep the spec's choices, or name a new study "
                         "(optuna option study)")
    return study
