"""The chosen model refitted on every page, and its twin fitted without the holdout kept for comparisons.

One-nearest-neighbour on random labels makes the difference visible: a model right on a page
only when it was fitted on it, so a refit that saw the holdout and a twin that did not answer
those pages differently.
"""
from __future__ import annotations

import numpy as np
import pytest

from automl.model import ECGModel
from automl.refit import refit_on_every_page
from features.handcrafted import PageFeatures

CLASSES = ["A", "B", "C"]


def _memoriser(X, y):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=1)).fit(X, y)


def _pages(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)), rng.integers(0, len(CLASSES), size=n)


def test_the_refit_learns_the_pages_its_twin_never_saw():
    from automl.calibration import TemperatureScaling

    X, y = _pages()
    learn, holdout = np.arange(45), np.arange(45, 60)
    twin = ECGModel(PageFeatures(sets=("signals",)), _memoriser(X[learn], y[learn]), CLASSES, engine="portfolio",
                    description="1-NN")
    twin.calibrator = TemperatureScaling().fit(np.full((10, 3), 1 / 3) + np.eye(3)[np.arange(10) % 3] * 0.5,
                                              np.arange(10) % 3)
    twin.uncertain_below = 0.6

    done = refit_on_every_page(twin, X, y)

    refitted = done.model
    assert refitted is not None and done.reason.startswith("refitted on all 60 pages, holdout included")
    assert refitted.holdout_model is twin and refitted.without_holdout is twin and twin.without_holdout is twin
    assert twin.classifier is not refitted.classifier
    on_holdout = refitted.uncalibrated_proba(X[holdout]).argmax(axis=1)
    assert (on_holdout == y[holdout]).all()  # it has seen them
    assert (twin.uncalibrated_proba(X[holdout]).argmax(axis=1) == y[holdout]).mean() < 0.8  # its twin has not
    # What the search decided about the twin stays: its calibrator, threshold and description.
    assert refitted.calibrator is twin.calibrator and refitted.uncertain_below == 0.6
    assert (refitted.engine, refitted.description) == ("portfolio", "1-NN")


def test_an_ensemble_refits_every_member_and_keeps_its_weights():
    from automl.ensemble import SoftVote

    X, y = _pages(seed=1)
    learn = np.arange(45)
    members = [_memoriser(X[learn], y[learn]), _memoriser(X[learn], y[learn])]
    vote = SoftVote(members, [0.75, 0.25], [np.arange(3), np.arange(3)], 3)
    twin = ECGModel(PageFeatures(sets=("signals",)), vote, CLASSES, engine="ensemble")

    refitted = refit_on_every_page(twin, X, y).model

    assert isinstance(refitted.classifier, SoftVote)
    assert list(refitted.classifier.weights) == [0.75, 0.25]
    assert all(m[-1].n_samples_fit_ == 60 for m in refitted.classifier.classifiers)
    assert all(m[-1].n_samples_fit_ == 45 for m in vote.classifiers)  # the twin's members are untouched


def test_what_cannot_be_refitted_stays_as_it_is_and_says_why():
    class Network:  # a Keras model's wrapper has layer_modules; it is never refitted
        layer_modules = ()
        classes_ = np.arange(3)

    class Opaque:  # not a scikit-learn estimator: nothing to clone
        classes_ = np.arange(3)

    X, y = _pages()
    for classifier, why in ((Network(), "networks keep the fit"), (Opaque(), "Opaque is not a scikit-learn")):
        done = refit_on_every_page(ECGModel(PageFeatures(sets=("signals",)), classifier, CLASSES), X, y)
        assert done.model is None and done.reason.startswith("not refitted: ") and why in done.reason


def test_a_refit_that_fails_leaves_the_twin_and_says_so():
    from sklearn.linear_model import LogisticRegression

    X, y = _pages()
    twin = ECGModel(PageFeatures(sets=("signals",)), LogisticRegression().fit(X, y), CLASSES)
    X_bad = X.copy()
    X_bad[0, 0] = np.nan  # logistic regression refuses missing values
    done = refit_on_every_page(twin, X_bad, y)
    assert done.model is None and "the refit failed (ValueError" in done.reason


@pytest.mark.slow
def test_champion_challenger_rescores_a_refitted_champion_through_its_twin(tiny_synthetic, tmp_path):
    """A champion refitted on every page has seen the holdout; comparing it there would favour it."""
    import mlflow

    from automl.registry import _rescore, write_model_files
    from automl.tracking import use_store
    from features.dataset import scan

    frame = scan(tiny_synthetic, progress=False).frame
    paths = [str(p) for p in frame["path"]]
    labels = frame["label"].to_numpy(dtype=object)
    classes = sorted(set(labels))
    features = PageFeatures(sets=("signals",), progress=False)
    X = features.transform(paths)
    y = np.random.default_rng(3).permutation(np.array([classes.index(label) for label in labels]))
    seen = np.arange(len(y)) % 3 != 0  # the twin never saw a third of the pages
    twin = ECGModel(features, _memoriser(X[seen], y[seen]), classes)
    refitted = refit_on_every_page(twin, X, y).model
    shuffled = np.asarray(classes, dtype=object)[y]  # the labels the models learned

    client = use_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("refit-test", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(write_model_files(refitted, tmp_path / "model")), "model")
    client.create_registered_model("refitted")
    version = client.create_model_version("refitted", f"runs:/{run.info.run_id}/model", run.info.run_id).version

    score, problem = _rescore("refitted", version, paths, shuffled, "accuracy")

    assert problem == ""
    loaded = mlflow.pyfunc.load_model(f"models:/refitted/{version}").unwrap_python_model().model
    assert (loaded.predict(paths) == shuffled).all()  # the refitted champion knows every page...
    assert score == pytest.approx((twin.predict(paths) == shuffled).mean()) and score < 1.0  # ...its twin is scored
