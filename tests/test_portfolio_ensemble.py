"""Strong defaults first, and the greedy ensemble over out-of-fold probabilities (real scikit-learn fits)."""
from __future__ import annotations

import numpy as np
import pytest

from automl.engines.base import TrainingData
from automl.engines.portfolio import DEFAULT_CONFIGURATIONS, PortfolioEngine
from automl.ensemble import SoftVote, build_ensemble, greedy_selection
from automl.evaluate import score_probabilities
from features.handcrafted import PageFeatures

CLASSES = ["Abnormal_HeartBeat", "MI", "Normal"]


def _training(tmp_path, n=150, seed=0, noise=1.0):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=12, n_informative=6, n_classes=3, class_sep=noise,
                               weights=[0.5, 0.2, 0.3], random_state=seed)
    X[::17, 3] = np.nan  # page features can be missing where a lead was not read
    return TrainingData(paths=[f"p{i}.jpg" for i in range(n)], X=X, y=np.array(CLASSES, dtype=object)[y],
                        classes=CLASSES, features=PageFeatures(sets=("trace",)), metric="macro_f1", seed=0,
                        workdir=tmp_path)


class Recorder:
    def __init__(self):
        self.trials = []

    def __call__(self, trial):
        self.trials.append(trial)
        return f"run-{len(self.trials)}"


def test_every_default_is_a_logged_trial_and_the_best_compete_with_their_out_of_fold_probabilities(tmp_path):
    data = _training(tmp_path)
    log = Recorder()
    engine = PortfolioEngine(cv=4, candidates=2)
    candidates = engine.search(data, 120, log)
    assert [t.params["configuration"] for t in log.trials] == list(DEFAULT_CONFIGURATIONS)
    assert all(t.status == "ok" and 0 < t.score <= 1 for t in log.trials)
    assert engine.report.ended == "finished" and engine.report.trials == len(DEFAULT_CONFIGURATIONS)
    best = max(log.trials, key=lambda t: t.score)
    assert len(candidates) == 2 and candidates[0].validation_score == pytest.approx(best.score)
    assert candidates[0].run_id == f"run-{log.trials.index(best) + 1}"
    y = np.array([CLASSES.index(c) for c in data.y])
    for candidate in candidates:
        oof = candidate.calibration
        assert np.array_equal(oof.pages, np.arange(len(y))) and np.array_equal(oof.y, y)
        # The score is the out-of-fold probabilities' own, and the refitted model reads the features.
        assert score_probabilities("macro_f1", y, oof.proba) == pytest.approx(candidate.validation_score)
        proba = candidate.model.uncalibrated_proba(data.X[:5])
        assert proba.shape == (5, 3) and np.allclose(proba.sum(axis=1), 1)


def test_a_slice_too_short_skips_configurations_and_says_so(tmp_path):
    data = _training(tmp_path)
    log = Recorder()
    engine = PortfolioEngine(cv=3)
    assert engine.search(data, 0.0, log) == [] and log.trials == []
    assert engine.report.ended == "slice" and engine.report.reason.startswith("out of time before hgb_balanced")


def test_unknown_configurations_are_refused():
    with pytest.raises(ValueError, match="choose from hgb_balanced"):
        PortfolioEngine(configurations=("xgboost",))


def test_greedy_selection_mixes_two_models_that_are_right_on_different_pages():
    y = np.array([0, 0, 1, 1, 0, 1])
    # A is right (and sure) on the first four pages, a little wrong on the last two; B the reverse.
    a = np.array([[.9, .1], [.9, .1], [.1, .9], [.1, .9], [.4, .6], [.6, .4]])
    b = np.array([[.4, .6], [.4, .6], [.6, .4], [.6, .4], [.9, .1], [.1, .9]])
    useless = np.full((6, 2), 0.5)

    def accuracy(t, p):
        return score_probabilities("accuracy", t, p)

    selection = greedy_selection([a, b, useless], y, accuracy)
    assert accuracy(y, a) == pytest.approx(4 / 6) and selection.score == 1.0
    assert selection.weights[0] > 0 and selection.weights[1] > 0 and selection.weights[2] == 0
    assert selection.weights.sum() == pytest.approx(1)


def test_soft_vote_maps_each_members_columns_into_the_classes():
    class Fixed:
        def __init__(self, proba):
            self.proba = np.asarray(proba, dtype=float)

        def predict_proba(self, X):
            return np.repeat(self.proba[None], len(X), axis=0)

    vote = SoftVote([Fixed([1.0, 0.0]), Fixed([0.2, 0.8])], [0.5, 0.5], [[2, 0], [0, 1]], 3)
    np.testing.assert_allclose(vote.predict_proba(np.zeros((2, 1))), [[0.1, 0.4, 0.5]] * 2)


def test_the_ensemble_is_an_ecg_model_over_the_search_features_with_members_and_weights(tmp_path):
    data = _training(tmp_path, n=240, seed=3, noise=0.6)
    three = ("hgb_balanced", "logistic", "svc_rbf")  # unlike models, so that mixing them pays
    candidates = PortfolioEngine(three, cv=4, candidates=3).search(data, 300, Recorder())
    built = build_ensemble(candidates, data)
    best_single = max(c.validation_score for c in candidates)
    assert built is not None, "three unlike defaults on noisy classes: the selection should mix some"
    ensemble, selection, members = built
    assert len(members) >= 2 and sum(w for _, w in members) == pytest.approx(1)
    assert selection.score >= best_single - 1e-9 and ensemble.validation_score == selection.score
    assert ensemble.engine == "ensemble" and ensemble.model.features is data.features
    assert all(f"x {c.engine} " in ensemble.description for c, _ in members)
    proba = ensemble.model.uncalibrated_proba(data.X[:4])
    manual = sum(w * c.model.uncalibrated_proba(data.X[:4]) for c, w in members)
    np.testing.assert_allclose(proba, manual / manual.sum(axis=1, keepdims=True), atol=1e-9)
    y = np.array([CLASSES.index(c) for c in data.y])
    assert score_probabilities("macro_f1", y, ensemble.calibration.proba) == pytest.approx(selection.score)


def test_candidates_without_shared_out_of_fold_pages_do_not_join(tmp_path):
    data = _training(tmp_path)
    candidates = PortfolioEngine(("logistic", "svc_rbf", "hgb"), cv=3, candidates=3).search(data, 120, Recorder())
    for candidate in candidates[1:]:
        candidate.calibration.pages = candidate.calibration.pages[:0].copy()  # e.g. a network's validation share
        candidate.calibration.proba = candidate.calibration.proba[:0]
        candidate.calibration.y = candidate.calibration.y[:0]
    assert build_ensemble(candidates, data) is None


def test_selection_folds_are_shared_stratified_and_not_the_searchs_own():
    """Candidates of every engine are ranked on the same splits, and a searching engine's winner
    is not scored on the folds it was chosen on (TPOT's CV uses the seed's own folds)."""
    from sklearn.model_selection import StratifiedKFold

    from automl.engines.folds import selection_folds

    y = np.repeat([0, 1, 2], [60, 12, 28])
    splits = selection_folds(y, seed=3, folds=5)
    tested = np.sort(np.concatenate([test for _, test in splits]))
    assert np.array_equal(tested, np.arange(len(y)))  # every page is out of fold exactly once
    assert all(np.bincount(y[test], minlength=3).min() >= 2 for _, test in splits)  # stratified
    again = selection_folds(y, seed=3, folds=5)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
    searched = list(StratifiedKFold(5, shuffle=True, random_state=3).split(np.zeros(len(y)), y))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(splits, searched))
    assert len(selection_folds(np.repeat([0, 1], [50, 3]), seed=0, folds=5)) == 3  # capped by the rarest class
