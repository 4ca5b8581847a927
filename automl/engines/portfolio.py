"""Strong defaults first: configurations known to do well on tabular features, in seconds.

Before any engine spends its slice, a small portfolio (gradient boosting with and without class
weights, regularised logistic regression, extra trees, an RBF support-vector machine, a random
forest) is cross-validated on the search's feature vectors. Each configuration is a trial like
any other; the best are refitted on every training page and compete as candidates, with their
out-of-fold probabilities for calibration, ranking and the ensemble. So a search can never end
with a model worse, on its own cross-validation, than a default a user would have tried first.

It runs from the search's own process (each configuration takes seconds on page features), its
folds side by side on every core, each fold single-threaded: OpenMP's threads inside
gradient boosting crawl when another process holds a core. A configuration starts only while
the slice has room for it (judged by the slowest so far), and is skipped, and said, otherwise.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from automl.engines.base import Candidate, EngineReport, TrainingData, TrialLog
from automl.engines.folds import fit_fold, out_of_fold, selection_folds

__all__ = ["DEFAULT_CONFIGURATIONS", "PortfolioEngine"]

log = logging.getLogger(__name__)


def _imputed(estimator, scale: bool):
    """Page features can be missing (NaN) where a lead was not read: median-imputed, then scaled."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [SimpleImputer(strategy="median", keep_empty_features=True)]
    return make_pipeline(*steps, *([StandardScaler()] if scale else []), estimator)


def _hgb(seed: int, balanced: bool):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(class_weight="balanced" if balanced else None, random_state=seed)


def _logistic(seed: int):
    from sklearn.linear_model import LogisticRegression

    return _imputed(LogisticRegression(C=0.5, class_weight="balanced", max_iter=3000, random_state=seed), scale=True)


def _extra_trees(seed: int):
    from sklearn.ensemble import ExtraTreesClassifier

    return _imputed(ExtraTreesClassifier(n_estimators=400, class_weight="balanced", random_state=seed), scale=False)


def _svc(seed: int):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    # Platt scaling on internal folds (SVC's own probability=True is deprecated in scikit-learn 1.9).
    svc = SVC(C=3.0, gamma="scale", class_weight="balanced", random_state=seed)
    return _imputed(CalibratedClassifierCV(svc, method="sigmoid", cv=3, ensemble=False), scale=True)


def _random_forest(seed: int):
    from sklearn.ensemble import RandomForestClassifier

    return _imputed(RandomForestClassifier(n_estimators=400, class_weight="balanced_subsample", random_state=seed),
                    scale=False)


# name -> (description, factory(seed) -> unfitted estimator). Order: cheapest and strongest first.
DEFAULT_CONFIGURATIONS: dict[str, tuple[str, Callable[[int], object]]] = {
    "hgb_balanced": ("HistGradientBoostingClassifier(class_weight='balanced')", lambda s: _hgb(s, True)),
    "hgb": ("HistGradientBoostingClassifier() (scikit-learn's defaults)", lambda s: _hgb(s, False)),
    "logistic": ("StandardScaler -> LogisticRegression(C=0.5, class_weight='balanced')", _logistic),
    "extra_trees": ("ExtraTreesClassifier(n_estimators=400, class_weight='balanced')", _extra_trees),
    "svc_rbf": ("StandardScaler -> SVC(rbf, C=3, class_weight='balanced')", _svc),
    "random_forest": ("RandomForestClassifier(n_estimators=400, class_weight='balanced_subsample')", _random_forest),
}


class PortfolioEngine:
    """Options come from the experiment spec's ``engines.portfolio`` block.

    configurations: which of :data:`DEFAULT_CONFIGURATIONS` to try, in order (default: all).
    cv: folds of the stratified cross-validation (no more than the rarest class has pages).
    candidates: how many of the best are refitted and offered.
    """

    name = "portfolio"
    resumable = False  # every configuration is tried in the first call
    startup_estimate = 0.0  # runs in the search's process
    min_trial_seconds = 3.0

    def __init__(self, configurations=tuple(DEFAULT_CONFIGURATIONS), cv: int = 5, candidates: int = 2) -> None:
        unknown = [c for c in configurations if c not in DEFAULT_CONFIGURATIONS]
        if unknown or not configurations:
            raise ValueError(f"portfolio option configurations: unknown or none {unknown or ''}; choose from "
                             f"{', '.join(DEFAULT_CONFIGURATIONS)}")
        if int(cv) < 2 or int(candidates) < 1:
            raise ValueError("portfolio options: cv >= 2, candidates >= 1")
        self.configurations = list(configurations)
        self.cv, self.candidates = int(cv), int(candidates)
        self.report: EngineReport | None = None

    def search(self, data: TrainingData, seconds: float, log_trial: TrialLog) -> list[Candidate]:
        from automl.calibration import CalibrationSet
        from automl.evaluate import score_probabilities
        from automl.model import ECGModel

        started = time.monotonic()
        deadline = started + seconds
        classes = list(data.classes)
        y = np.array([classes.index(label) for label in data.y], dtype=np.int64)
        X = np.asarray(data.X, dtype=np.float64)
        splits = selection_folds(y, data.seed, self.cv)
        done: list[dict] = []
        skipped = []
        slowest = 0.0
        for number, name in enumerate(self.configurations):
            description, factory = DEFAULT_CONFIGURATIONS[name]
            fit_started = time.monotonic()
            if fit_started + slowest > deadline or fit_started >= deadline:
                skipped.append(name)
                continue
            try:
                oof = out_of_fold(lambda: factory(data.seed), X, y, len(classes), splits)
            except Exception as exc:  # one configuration failing must not cost the others
                log_trial(_trial(number, name, description, None, time.monotonic() - fit_started, "failed",
                                 f"{type(exc).__name__}: {exc}".splitlines()[0][:500]))
                continue
            seconds_taken = time.monotonic() - fit_started
            slowest = max(slowest, seconds_taken)
            score = score_probabilities(data.metric, y, oof)
            run_id = log_trial(_trial(number, name, description, score, seconds_taken, "ok"))
            done.append({"name": name, "description": description, "score": score, "oof": oof, "run_id": run_id,
                         "seconds": seconds_taken})
        done.sort(key=lambda d: -d["score"] if np.isfinite(d["score"]) else np.inf)
        candidates = []
        for entry in done[: self.candidates]:
            if candidates and time.monotonic() + entry["seconds"] / len(splits) > deadline:
                break  # the best one is always refitted; the others while time is left
            estimator = DEFAULT_CONFIGURATIONS[entry["name"]][1](data.seed)
            fit_fold(estimator, X, y, np.arange(len(y)), np.arange(0))  # on every training page

            model = ECGModel(data.features, estimator, classes, engine=self.name, description=entry["description"],
                             params={"configuration": entry["name"]})
            candidates.append(Candidate(self.name, model, float(entry["score"]), {"configuration": entry["name"]},
                                        entry["run_id"], entry["description"],
                                        CalibrationSet(entry["oof"], y, "out-of-fold predictions on the training pages",
                                                       pages=np.arange(len(y)))))
        reason = (f"out of time before {', '.join(skipped)}" if skipped
                  else f"its {len(self.configurations)} configurations")
        self.report = EngineReport(self.name, seconds, time.monotonic() - started, len(done),
                                   "slice" if skipped else "finished", reason, 0.0)
        return candidates


def _trial(number: int, name: str, description: str, score, seconds: float, status: str, error: str = ""):
    from automl.engines.base import Trial

    return Trial("portfolio", number, description, {"configuration": name}, score, seconds, status, error)
