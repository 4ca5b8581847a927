"""Calibration: over-confident models get honest probabilities, and ECE says how honest they are."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from automl.calibration import (CalibrationSet, OneVsRestCalibration, TemperatureScaling, calibrate_model,
                                choose_method, expected_calibration_error)
from automl.model import ECGModel


class Overconfident:
    """A fitted classifier whose probabilities are sharpened far beyond what it knows."""

    def __init__(self, base, power: float = 6.0) -> None:
        self.base, self.power = base, power
        self.classes_ = base.classes_

    def predict_proba(self, X):
        p = self.base.predict_proba(X) ** self.power
        return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def noisy_problem():
    """Three classes with 25% of labels flipped: no model can honestly be sure of many pages."""
    X, y = make_classification(n_samples=3000, n_features=8, n_informative=5, n_classes=3, flip_y=0.25,
                               random_state=0)
    fit, cal, test = slice(0, 1000), slice(1000, 2000), slice(2000, 3000)
    model = ECGModel(None, Overconfident(LogisticRegression(max_iter=500).fit(X[fit], y[fit])), ["a", "b", "c"])
    return model, (X[cal], y[cal]), (X[test], y[test])


def test_ece_is_zero_for_honest_probabilities_and_large_for_overconfident_ones():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.4, 1.0, size=20000)
    correct = rng.random(20000) < confidence  # right exactly as often as it says
    proba = np.column_stack([confidence, 1 - confidence])
    y = np.where(correct, 0, 1)
    assert expected_calibration_error(y, proba) < 0.02
    sure = np.column_stack([np.full(20000, 0.99), np.full(20000, 0.01)])
    assert expected_calibration_error(y, sure) == pytest.approx(0.99 - correct.mean(), abs=0.01)
    assert np.isnan(expected_calibration_error(np.array([], dtype=int), np.zeros((0, 2))))


@pytest.mark.parametrize("method", ["temperature", "sigmoid", "isotonic"])
def test_an_overconfident_models_ece_drops_after_calibration(noisy_problem, method):
    model, (X_cal, y_cal), (X_test, y_test) = noisy_problem
    before = expected_calibration_error(y_test, model.uncalibrated_proba(X_test))
    facts = calibrate_model(model, CalibrationSet(model.uncalibrated_proba(X_cal), y_cal, "calibration pages"), method)
    after = expected_calibration_error(y_test, model.proba_from_features(X_test))  # pages the calibrator never saw
    assert before > 0.15, before  # the model really is over-confident
    assert after < 0.5 * before and after < 0.1, (method, before, after)
    assert facts["calibration_ece_after"] < facts["calibration_ece_before"]
    assert "fitted on 1000 calibration pages" in facts["calibration"]
    assert np.allclose(model.proba_from_features(X_test).sum(axis=1), 1.0)


def test_temperature_scaling_softens_an_overconfident_model_without_changing_any_answer(noisy_problem):
    model, (X_cal, y_cal), (X_test, _) = noisy_problem
    scaler = TemperatureScaling().fit(model.uncalibrated_proba(X_cal), y_cal)
    raw = model.uncalibrated_proba(X_test)
    assert scaler.temperature_ > 2.0  # power 6 sharpening: the fitted temperature undoes much of it
    assert np.array_equal(scaler.transform(raw).argmax(axis=1), raw.argmax(axis=1))


def test_a_class_missing_from_the_calibration_pages_keeps_its_probability():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]] * 10)
    y = np.array([0, 1, 0, 1] * 10)  # class 2 never appears
    calibrated = OneVsRestCalibration("sigmoid").fit(proba, y).transform(np.array([[0.1, 0.1, 0.8]]))
    assert np.allclose(calibrated.sum(axis=1), 1.0) and calibrated[0].argmax() == 2


def test_auto_picks_temperature_for_networks_and_isotonic_only_on_many_pages():
    assert choose_method("auto", network=True, n_pages=50) == "temperature"
    assert choose_method("auto", network=False, n_pages=200) == "sigmoid"
    assert choose_method("auto", network=False, n_pages=5000) == "isotonic"
    assert choose_method("isotonic", network=True, n_pages=10) == "isotonic"
    with pytest.raises(ValueError, match="calibration must be one of"):
        choose_method("platt", network=False, n_pages=10)


def test_too_few_or_no_calibration_pages_leave_the_model_uncalibrated_and_say_why(noisy_problem):
    model, (X_cal, y_cal), _ = noisy_problem
    assert calibrate_model(model, None, "auto")["calibration"] == "none: the engine gave no pages to fit it on"
    assert model.calibrator is None
    few = CalibrationSet(model.uncalibrated_proba(X_cal[:4]), y_cal[:4], "validation pages")
    assert "only 4 pages" in calibrate_model(model, few, "auto")["calibration"] and model.calibrator is None
    assert calibrate_model(model, few, "none")["calibration"].startswith("none (the experiment")


def test_uncertain_pages_are_those_below_the_threshold():
    model = ECGModel(None, LogisticRegression(), ["a", "b"])
    proba = np.array([[0.55, 0.45], [0.9, 0.1]])
    assert not model.uncertain(proba).any()  # no threshold: nothing flagged
    model.uncertain_below = 0.6
    assert model.uncertain(proba).tolist() == [True, False]
