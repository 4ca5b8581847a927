"""ECGModel: raw pages in, probabilities in the order of ``classes`` out, whatever the classifier's labels."""
import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from automl.model import ECGModel
from automl.pyfunc import pages_from_input, prediction_frame
from features.handcrafted import PageFeatures


def fitted(X, y):
    return make_pipeline(StandardScaler(), LogisticRegression(C=100, max_iter=5000)).fit(X, y)


@pytest.fixture(scope="module")
def pages(tiny_synthetic):
    paths = sorted(str(p) for p in tiny_synthetic.glob("*/*.jpg"))
    labels = [p.split("/")[-2] for p in paths]
    return paths, labels


@pytest.mark.parametrize("encoded", [False, True], ids=["names", "indices"])
def test_probabilities_follow_classes_from_paths_bytes_and_arrays(pages, encoded):
    paths, labels = pages
    classes = sorted(set(labels))
    features = PageFeatures(progress=False)
    X = features.transform(paths)
    y = [classes.index(label) for label in labels] if encoded else labels
    model = ECGModel(features, fitted(X, y), classes)
    from_paths = model.predict_proba(paths[:3])
    from_bytes = model.predict_proba([open(p, "rb").read() for p in paths[:3]])
    assert from_paths.shape == (3, 5) and np.allclose(from_paths.sum(axis=1), 1)
    assert np.allclose(from_paths, from_bytes)
    assert list(model.predict(paths)) == labels  # trained on these pages: it must get them right
    assert np.allclose(pickle.loads(pickle.dumps(model)).predict_proba(paths[:3]), from_paths)


def test_classifier_classes_are_mapped_into_the_models_order(pages):
    paths, labels = pages
    features = PageFeatures(progress=False)
    X = features.transform(paths)
    reversed_classes = sorted(set(labels), reverse=True)
    model = ECGModel(features, fitted(X, labels), reversed_classes)
    proba = model.proba_from_features(X)
    assert [reversed_classes[i] for i in proba.argmax(axis=1)] == labels


def test_a_classifier_with_an_unknown_class_is_refused(pages):
    paths, labels = pages
    features = PageFeatures(progress=False)
    clf = LogisticRegression(max_iter=200).fit(features.transform(paths), labels)
    with pytest.raises(ValueError, match="not among"):
        ECGModel(features, clf, ["Normal", "MI"])


def test_pyfunc_input_takes_paths_bytes_or_both_per_row():
    import pandas as pd

    frame = pd.DataFrame({"image": ["a.jpg", None, "c.jpg"], "image_bytes": [None, b"xx", b"yy"]})
    assert pages_from_input(frame) == ["a.jpg", b"xx", b"yy"]
    assert pages_from_input(["a.jpg", bytearray(b"z")]) == ["a.jpg", b"z"]
    with pytest.raises(ValueError, match="neither"):
        pages_from_input(pd.DataFrame({"image": [None]}))
    with pytest.raises(ValueError, match="expected a column"):
        pages_from_input(pd.DataFrame({"x": [1], "y": [2]}))
    out = prediction_frame(["A", "B"], np.array([[0.2, 0.8], [0.9, 0.1]]), np.array([False, True]))
    assert list(out.columns) == ["class", "p_A", "p_B", "uncertain", "status", "reason"]
    assert list(out["class"]) == ["B", "A"] and list(out["status"]) == ["read", "read"]
    assert list(out["uncertain"]) == [False, True]
