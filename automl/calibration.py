"""Calibrated probabilities: a model that says 0.9 should be right about nine times in ten.

A classifier's scores are turned into calibrated probabilities by a map fitted on pages the
model was not fitted on (:class:`CalibrationSet`): temperature scaling for networks (one
parameter; it never changes which class wins), and per-class sigmoid (Platt) or isotonic
regression for the other models, as scikit-learn's ``CalibratedClassifierCV`` does. Isotonic
needs many pages to beat sigmoid, so ``"auto"`` picks it only from
:data:`ISOTONIC_MIN_PAGES` calibration pages on. The expected calibration error (ECE) says how
far a model's confidence is from its accuracy, before and after.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CALIBRATION_METHODS", "CalibrationSet", "ISOTONIC_MIN_PAGES", "OneVsRestCalibration",
           "TemperatureScaling", "calibrate_model", "choose_method", "expected_calibration_error", "fit_calibrator"]

CALIBRATION_METHODS = ("auto", "temperature", "sigmoid", "isotonic", "none")
ISOTONIC_MIN_PAGES = 1000  # scikit-learn's guidance: isotonic overfits below about a thousand samples
MIN_PAGES = 10  # fewer calibration pages than this fit noise, not calibration
_EPS = 1e-12


@dataclass
class CalibrationSet:
    """Probabilities of pages a model was not fitted on, with their labels (class indices).

    ``source`` says where they come from, for the model card: e.g. "validation pages" for a
    network, "out-of-fold predictions" for a pipeline refitted on every training page.
    ``pages``: which of the search's training pages the rows are (indices), when known; the
    ensemble combines candidates on the pages they share.
    """

    proba: np.ndarray
    y: np.ndarray
    source: str
    pages: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.proba = np.asarray(self.proba, dtype=float)
        self.y = np.asarray(self.y, dtype=int)
        if self.proba.ndim != 2 or len(self.proba) != len(self.y):
            raise ValueError(f"calibration set: {self.proba.shape} probabilities for {len(self.y)} labels")
        if self.pages is not None:
            self.pages = np.asarray(self.pages, dtype=int)
            if self.pages.shape != self.y.shape:
                raise ValueError(f"calibration set: {len(self.pages)} page indices for {len(self.y)} labels")


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: the page-weighted gap between confidence and accuracy over equal-width bins.

    ``y`` holds class indices (columns of ``proba``). 0 is perfectly calibrated; NaN for no pages.
    """
    proba = np.asarray(proba, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return float("nan")
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in np.unique(which):
        inside = which == b
        gap += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(gap / len(y))


class TemperatureScaling:
    """Divide the log-probabilities by one temperature fitted to minimise the log-loss.

    T > 1 softens an over-confident network, T < 1 sharpens an under-confident one; the order
    of the classes on every page stays the same (Guo et al., 2017).
    """

    method = "temperature"

    def fit(self, proba: np.ndarray, y: np.ndarray) -> "TemperatureScaling":
        from scipy.optimize import minimize_scalar

        logits = np.log(np.clip(np.asarray(proba, dtype=float), _EPS, None))
        y = np.asarray(y, dtype=int)

        def log_loss(log_t: float) -> float:
            scaled = _softmax(logits / np.exp(log_t))
            return float(-np.mean(np.log(np.clip(scaled[np.arange(len(y)), y], _EPS, None))))

        found = minimize_scalar(log_loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
        self.temperature_ = float(np.exp(found.x))
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        return _softmax(np.log(np.clip(np.asarray(proba, dtype=float), _EPS, None)) / self.temperature_)

    def describe(self) -> str:
        return f"temperature scaling (T = {self.temperature_:.3g})"


class OneVsRestCalibration:
    """Each class's probability mapped by its own sigmoid (Platt) or isotonic fit, rows renormalised.

    A class absent from the calibration pages (or present on all of them) keeps its probability.
    """

    def __init__(self, method: str = "sigmoid") -> None:
        if method not in ("sigmoid", "isotonic"):
            raise ValueError(f"one-vs-rest calibration is sigmoid or isotonic, got {method!r}")
        self.method = method

    def fit(self, proba: np.ndarray, y: np.ndarray) -> "OneVsRestCalibration":
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression

        proba = np.asarray(proba, dtype=float)
        y = np.asarray(y, dtype=int)
        self.maps_ = []
        for k in range(proba.shape[1]):
            target = (y == k).astype(int)
            if target.min() == target.max():
                self.maps_.append(None)
            elif self.method == "isotonic":
                self.maps_.append(IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(proba[:, k], target))
            else:
                self.maps_.append(LogisticRegression(C=1e4).fit(_logit(proba[:, k])[:, None], target))
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, dtype=float)
        out = proba.copy()
        for k, fitted in enumerate(self.maps_):
            if fitted is None:
                continue
            if self.method == "isotonic":
                out[:, k] = fitted.predict(proba[:, k])
            else:
                out[:, k] = fitted.predict_proba(_logit(proba[:, k])[:, None])[:, 1]
        total = out.sum(axis=1, keepdims=True)
        uniform = np.full_like(out, 1.0 / out.shape[1])
        return np.where(total > _EPS, out / np.maximum(total, _EPS), uniform)

    def describe(self) -> str:
        return f"{'Platt (sigmoid)' if self.method == 'sigmoid' else 'isotonic'} scaling per class"


def choose_method(method: str, *, network: bool, n_pages: int) -> str:
    """``method`` with ``"auto"`` resolved: temperature for networks, else isotonic only on many pages."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    if method != "auto":
        return method
    if network:
        return "temperature"
    return "isotonic" if n_pages >= ISOTONIC_MIN_PAGES else "sigmoid"


def fit_calibrator(calibration: CalibrationSet, method: str):
    """A fitted calibrator (``transform(proba) -> proba``) for a resolved ``method``; None for "none"."""
    if method == "none":
        return None
    calibrator = TemperatureScaling() if method == "temperature" else OneVsRestCalibration(method)
    return calibrator.fit(calibration.proba, calibration.y)


def calibrate_model(model, calibration: CalibrationSet | None, method: str) -> dict:
    """Fit ``model``'s calibrator (an :class:`~automl.model.ECGModel`) and say what was done.

    Returns ``calibration`` (one line for the model card and MLflow) and, when fitted, the ECE
    on the calibration pages before and after (after is in-sample: the holdout's ECE is the
    honest figure). Too few or no calibration pages leave the model uncalibrated, and say so.
    """
    model.calibrator = None
    n_pages = 0 if calibration is None else len(calibration.y)
    resolved = choose_method(method, network=model.is_network, n_pages=n_pages)
    if resolved == "none":
        return {"calibration": "none (the experiment asks for none)"}
    if n_pages < MIN_PAGES:
        why = "the engine gave no pages to fit it on" if calibration is None else f"only {n_pages} pages to fit it on"
        return {"calibration": f"none: {why}"}
    before = expected_calibration_error(calibration.y, calibration.proba)
    model.calibrator = fit_calibrator(calibration, resolved)
    after = expected_calibration_error(calibration.y, model.calibrator.transform(calibration.proba))
    return {"calibration": f"{model.calibrator.describe()}, fitted on {n_pages} {calibration.source}",
            "calibration_ece_before": before, "calibration_ece_after": after}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
