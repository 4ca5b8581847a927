"""TPOT's search space for SmartECG, and the per-evaluation hook that records every trial.

The space is an optional scaler, an optional feature selector and one classifier: the seed
project's SVM, random forest and logistic regression beside TPOT's own extra trees, k-nearest
neighbours and gradient boosting. Every classifier gives ``predict_proba``.

Checked with TPOT 1.1.0 and scikit-learn 1.9 (see setup.cfg): TPOT's own logistic-regression
space uses the deprecated ``penalty`` and its gradient-boosting parser emits
``validation_fraction=None``, which scikit-learn refuses; both are replaced here. Everything TPOT
pickles (parsers, the hook) lives at module level: TPOT's checkpoints are plain pickles.
"""
from __future__ import annotations

import base64
import os
import pickle
import time

import numpy as np

from automl.engines.trialfile import append_line

__all__ = ["CV_SCORERS", "EvaluationLog", "build_search_space", "flat_params", "pipeline_text"]

# Spec metric -> scikit-learn scorer name used in cross-validation.
CV_SCORERS = {"macro_f1": "f1_macro", "accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy",
              "roc_auc": "roc_auc_ovr"}


def _logistic_parser(params: dict) -> dict:
    params = dict(params)
    if params.get("class_weight") == "none":
        params["class_weight"] = None
    return params


def _gradient_boosting_parser(params: dict) -> dict:
    from tpot.config.classifiers import GradientBoostingClassifier_hyperparameter_parser

    out = GradientBoostingClassifier_hyperparameter_parser(params)
    if out.get("validation_fraction") is None:
        out.pop("validation_fraction", None)  # unused without early stopping, and None is refused
    return out


def build_search_space(n_classes: int, n_samples: int, n_features: int, random_state: int | None = None):
    import tpot
    from ConfigSpace import Categorical, ConfigurationSpace, Float
    from sklearn.linear_model import LogisticRegression
    from tpot.search_spaces.nodes import EstimatorNode
    from tpot.search_spaces.pipelines import ChoicePipeline, SequentialPipeline

    sizes = dict(n_classes=n_classes, n_samples=n_samples, n_features=n_features, random_state=random_state)
    space = tpot.config.get_search_space
    scaler = space(["StandardScaler", "MinMaxScaler", "RobustScaler", "Passthrough"], **sizes)
    selector = space(["SelectPercentile", "VarianceThreshold", "SelectFwe", "Passthrough"], **sizes)
    logistic_space = ConfigurationSpace({
        "solver": "saga", "max_iter": 1000,
        "C": Float("C", (0.01, 1e3), log=True), "l1_ratio": Float("l1_ratio", (0.0, 1.0)),
        "class_weight": Categorical("class_weight", ["none", "balanced"]),
    })
    if random_state is not None:
        logistic_space.add(Categorical("random_state", [random_state]))
    logistic = EstimatorNode(LogisticRegression, logistic_space, hyperparameter_parser=_logistic_parser)
    boosting = space("GradientBoostingClassifier", **sizes)
    boosting.hyperparameter_parser = _gradient_boosting_parser
    classifier = ChoicePipeline([
        space("SVC", **sizes),  # probability=True in TPOT's space: predict_proba works
        space("RandomForestClassifier", **sizes),
        logistic,
        space("ExtraTreesClassifier", **sizes),
        space("KNeighborsClassifier", **sizes),
        space("HistGradientBoostingClassifier", **sizes),
        boosting,
    ])
    return SequentialPipeline([scaler, selector, classifier])


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__  # a score function: its name, not its address
    return repr(value)


def flat_params(pipeline) -> dict:
    """``{"<step>.<param>": value}`` of every step that is not a passthrough, plain types only."""
    out = {}
    for name, step in pipeline.steps:
        if type(step).__name__ == "Passthrough":
            continue
        out[f"{name}.estimator"] = type(step).__name__
        for key, value in sorted(step.get_params(deep=False).items()):
            out[f"{name}.{key}"] = _plain(value)
    return out


def pipeline_text(pipeline) -> str:
    """``StandardScaler() -> SVC(C=1.2, ...)``: non-default parameters only, passthroughs left out."""
    parts = []
    for _, step in pipeline.steps:
        if type(step).__name__ == "Passthrough":
            continue
        defaults = type(step)().get_params(deep=False) if _constructible(type(step)) else {}
        shown = {k: v for k, v in step.get_params(deep=False).items() if k not in defaults or _differs(defaults[k], v)}
        args = ", ".join(f"{k}={_plain(v)!r}" for k, v in sorted(shown.items()))
        parts.append(f"{type(step).__name__}({args})")
    return " -> ".join(parts) or "Passthrough()"


def _constructible(cls) -> bool:
    try:
        cls()
        return True
    except Exception:
        return False


def _differs(a, b) -> bool:
    try:
        return bool(a != b)
    except Exception:
        return True


class EvaluationLog:
    """TPOT's objective: cross-validates a pipeline and appends one JSON line per evaluation.

    TPOT writes its own records once per generation; this writes each evaluation as it ends,
    from the Dask worker that ran it, in one ``O_APPEND`` write, so a search stopped at any
    moment keeps every trial that finished. Each line carries the unfitted pipeline (pickled,
    base64), so the parent can refit the best ones without TPOT.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, cv, scoring: str, path: str, name: str = "cv_score",
                 queue: str | None = None) -> None:
        self.X, self.y, self.cv, self.scoring, self.path = X, y, cv, scoring, path
        self.queue = queue  # a Dask queue instead of the file, when workers may be on other machines
        self.__name__ = name  # TPOT names the objective's column after it

    def __call__(self, pipeline) -> float:
        from sklearn.model_selection import cross_val_score

        record = {"pid": os.getpid(), "start": time.time(), "pipeline": pipeline_text(pipeline),
                  "params": flat_params(pipeline),
                  "pickle": base64.b64encode(pickle.dumps(pipeline)).decode("ascii")}
        try:
            scores = cross_val_score(pipeline, self.X, self.y, cv=self.cv, scoring=self.scoring, error_score="raise")
            record.update(status="ok", score=float(np.mean(scores)), fold_scores=[float(s) for s in scores])
            return record["score"]
        except BaseException as exc:  # func_timeout's FunctionTimedOut is a BaseException
            timed_out = type(exc).__name__.startswith("FunctionTimedOut")
            record.update(status="timeout" if timed_out else "failed", score=None,
                          error=f"{type(exc).__name__}: {exc}"[:1000])
            raise
        finally:
            record["seconds"] = time.time() - record["start"]
            if self.queue:
                from distributed import Queue

                Queue(self.queue).put(record)  # the TPOT worker process writes it to the file
            else:
                append_line(self.path, record)
