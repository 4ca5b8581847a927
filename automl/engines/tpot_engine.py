"""TPOT over feature vectors, stopped at the end of its slice, every evaluation logged as it ends.

TPOT runs in a worker process group (:mod:`automl.engines.tpot_worker`) with its own time limit
set short of the slice; the runner stops the group at the slice's end in any case, because
TPOT's ``max_time_mins`` is only checked between generations. The parent tails the worker's
``trials.jsonl`` and logs each evaluation as it appears. When the worker is gone, the best
pipelines by cross-validated score are refitted here on all the training data and become
candidates.
"""
from __future__ import annotations

import base64
import logging
import pickle
import time
import warnings

import numpy as np

from automl.engines.base import Candidate, EngineReport, TrainingData, TrialLog
from automl.engines.folds import fold_count, out_of_fold, selection_folds
from automl.engines.tpot_space import CV_SCORERS
from automl.engines.worker_engine import WorkerEngine
from automl.model import ECGModel

__all__ = ["TPOTEngine"]

log = logging.getLogger(__name__)


class TPOTEngine(WorkerEngine):
    """Options come from the experiment spec's ``engines.tpot`` block.

    population_size: pipelines per generation. cv: folds of the cross-validation that scores
    each pipeline. max_eval_seconds: TPOT's (soft) limit per pipeline. n_jobs: Dask workers.
    candidates: how many of the best pipelines are refitted and scored on the holdout.
    early_stop: generations without improvement before TPOT stops itself (None: never).
    dask_scheduler: address of a running Dask scheduler (``tcp://host:8786``) whose workers
    evaluate the pipelines instead of a local cluster (every worker needs SmartECG installed).
    """

    name, label, worker_module = "tpot", "TPOT", "automl.engines.tpot_worker"
    resumable = False  # a second call starts a new population: given back time goes to others first
    startup_estimate = 4.0  # TPOT's imports and its Dask cluster; until measured here
    min_trial_seconds = 4.0  # a few cross-validated pipelines on page features, and the refit of the best

    def __init__(self, population_size: int = 16, cv: int = 5, max_eval_seconds: float = 60.0, n_jobs: int = 2,
                 candidates: int = 3, early_stop: int | None = None, dask_scheduler: str | None = None) -> None:
        self.population_size = int(population_size)
        self.cv = int(cv)
        self.max_eval_seconds = float(max_eval_seconds)
        self.n_jobs = int(n_jobs)
        self.candidates = int(candidates)
        self.early_stop = early_stop
        self.dask_scheduler = dask_scheduler
        super().__init__()
        self._kept: list[Candidate] = []
        if self.population_size < 2 or self.cv < 2 or self.n_jobs < 1 or self.candidates < 1 or self.max_eval_seconds <= 0:
            raise ValueError("tpot options: population_size >= 2, cv >= 2, n_jobs >= 1, candidates >= 1, "
                             "max_eval_seconds > 0")

    def search(self, data: TrainingData, seconds: float, log_trial: TrialLog) -> list[Candidate]:
        call = self._new_call(data, seconds)
        start, deadline, y = call.started, call.deadline, call.y
        # Refits and out-of-fold predictions (for calibration) of the best pipelines, after TPOT:
        # at least this much; more as the trials show what the best pipelines cost (below).
        refit_reserve = min(0.25 * seconds, 2.0 + 1.5 * self.candidates)
        # TPOT checks its own clock only between generations, so the runner's hard stop is what
        # ends the slice; TPOT's limit is set to the same time (it would stop a little later).
        tpot_seconds = max(5.0, seconds - refit_reserve)
        np.savez(call.workdir / "data.npz", X=data.X.astype(np.float64), y=y)
        folds = self._folds(y)
        job = {
            "classes": call.classes, "seed": data.seed, "metric": data.metric, "scoring": CV_SCORERS[data.metric],
            "cv": folds, "n_jobs": self.n_jobs,
            "population_size": self.population_size, "early_stop": self.early_stop,
            "max_time_mins": tpot_seconds / 60.0, "max_eval_time_mins": self.max_eval_seconds / 60.0,
            "dask_scheduler": self.dask_scheduler,
        }
        trials = self._trial_tail(call, log_trial)

        def time_to_refit() -> bool:  # or the search wants this engine to give way
            if data.should_stop is not None and data.should_stop():
                return True
            return time.monotonic() >= deadline - self._refit_seconds(trials.records, folds, refit_reserve, seconds)

        run = self._run_worker(call, job, trials, deadline - refit_reserve, stop=time_to_refit)
        if run.stopped:
            log.info("tpot: stopped at the end of its slice after %.0f s, %d trials kept", run.seconds, len(trials.records))
        self._kept += self._refit_best(trials.records, data, y, deadline)
        # TPOT's own time limit is the slice's: a worker that ended near it was stopped by time too.
        by_time = run.stopped or run.seconds >= 0.9 * tpot_seconds
        ended = ("starved" if by_time and not trials.records else "slice") if by_time else "finished"
        reason = (f"no pipeline finished: the worker's start-up took {run.startup_seconds or run.seconds:.0f} s of "
                  "the slice" if ended == "starved" else "")
        self.report = EngineReport(self.name, seconds, time.monotonic() - start, len(trials.records), ended, reason,
                                   run.startup_seconds)
        return list(self._kept)

    def _refit_seconds(self, records: list[dict], folds: int, least: float, seconds: float) -> float:
        """Time to keep for the best pipelines so far: each one's out-of-fold predictions cost its
        cross-validation again and its refit about one more fold; never more than half the slice.
        On a busy machine a pipeline's cross-validation can take longer than the fixed minimum,
        and a candidate with no time for its out-of-fold predictions stays uncalibrated."""
        best = _best_distinct(records, self.candidates)
        need = 2.0 + sum(float(r.get("seconds") or 0.0) * (1.0 + 1.0 / folds) for r in best)
        return min(0.5 * seconds, max(least, need))

    def _refit_best(self, records: list[dict], data: TrainingData, y: np.ndarray, deadline: float) -> list[Candidate]:
        candidates: list[Candidate] = []
        for record in _best_distinct(records, self.candidates):
            if candidates and time.monotonic() >= deadline:
                break  # the best one is always refitted; the others only while time is left
            pipeline = _unfitted(record)
            try:
                with warnings.catch_warnings():  # convergence and deprecation notes were seen in CV already
                    warnings.simplefilter("ignore")
                    pipeline.fit(data.X, y)
            except Exception as exc:  # scored in CV but fails on all the data: report, try the next
                log.warning("tpot: refit of trial %d failed (%s)", record["number"], exc)
                continue
            model = ECGModel(data.features, pipeline, data.classes, engine=self.name,
                             description=record["pipeline"], params=record["params"])
            candidates.append(Candidate(self.name, model, float(record["score"]), record["params"],
                                        record.get("run_id"), record["pipeline"],
                                        self._out_of_fold(record, data, y, deadline)))
        return candidates

    def _out_of_fold(self, record: dict, data: TrainingData, y: np.ndarray, deadline: float):
        """Each training page's probabilities from the fold that did not fit on it (for calibration
        and ranking), on the shared selection folds rather than the ones TPOT chose the pipeline on.

        The pipeline's cross-validation took ``record["seconds"]``, and this costs no more (its
        folds run side by side): it is left out (the candidate stays uncalibrated) when the slice
        has no such time left.
        """
        from automl.calibration import CalibrationSet

        if time.monotonic() + float(record.get("seconds") or 0.0) > deadline:
            log.info("tpot: no time left for out-of-fold predictions of trial %d; it stays uncalibrated",
                     record["number"])
            return None
        folds = selection_folds(y, data.seed, self.cv)  # not the folds TPOT chose it on
        try:
            proba = out_of_fold(lambda: _unfitted(record), np.asarray(data.X), y, len(data.classes), folds)
        except Exception as exc:  # calibration is a refinement: the candidate goes on without it
            log.warning("tpot: out-of-fold predictions of trial %d failed (%s)", record["number"], exc)
            return None
        return CalibrationSet(proba, y, "out-of-fold predictions on the training pages", pages=np.arange(len(y)))

    def _folds(self, y: np.ndarray) -> int:
        """Cross-validation folds: the spec's, but no more than the rarest class has pages."""
        return fold_count(y, self.cv)


def _best_distinct(records: list[dict], n: int) -> list[dict]:
    """The ``n`` best-scored pipelines, best first, each once: TPOT evaluates an individual again
    when evolution brings it back, and three copies of one pipeline are one candidate."""
    ok = sorted((r for r in records if r["status"] == "ok" and r.get("score") is not None), key=lambda r: -r["score"])
    distinct: dict[str, dict] = {}
    for record in ok:
        distinct.setdefault(record["pipeline"], record)
    return list(distinct.values())[:n]


def _unfitted(record: dict):
    """The trial's pipeline as TPOT evaluated it, before any fit."""
    return pickle.loads(base64.b64decode(record["pickle"]))
