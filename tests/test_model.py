"""ECGModel: raw pages in, probabilities in the order of ``classes`` out, whatever the classifier's labels."""
import base64
import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from automl.model import ECGModel
from automl.pyfunc import pages_from_input, paths_allowed, prediction_frame
from features.gate import REFUSED, PageCheck
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


def test_pyfunc_input_takes_base64_bytes_or_paths_the_first_present_per_row():
    import pandas as pd

    frame = pd.DataFrame({"image": ["a.jpg", None, "c.jpg", "d.jpg"], "image_bytes": [None, b"xx", b"yy", None],
                          "image_b64": [None, None, base64.b64encode(b"zz").decode(), "d3c=\n"]})
    assert pages_from_input(frame) == ["a.jpg", b"xx", b"zz", b"ww"]
    assert pages_from_input(["a.jpg", bytearray(b"z")]) == ["a.jpg", b"z"]
    with pytest.raises(ValueError, match="expected a column"):
        pages_from_input(pd.DataFrame({"x": [1], "y": [2]}))


def test_a_row_with_nothing_to_read_is_refused_naming_the_row_and_what_to_send():
    import pandas as pd

    frame = pd.DataFrame({"image_b64": ["%%% not base64 %%%", None, None, ""], "image": [None, "/etc/passwd", None, ""]})
    rows = pages_from_input(frame, read_paths=False)
    assert all(isinstance(row, PageCheck) and row.status == REFUSED for row in rows)
    assert rows[0].reason.startswith("row 0: 'image_b64' is not valid base64")
    assert rows[1].reason.startswith("row 1: the 'image' column") and "switched off" in rows[1].reason
    assert rows[2].reason.startswith("row 2: no image") and rows[3].reason.startswith("row 3: no image")
    assert all("image_b64" in row.reason for row in rows)  # each says what to send instead
    assert pages_from_input(frame, read_paths=True)[1] == "/etc/passwd"
    assert isinstance(pages_from_input(["x.jpg"], read_paths=False)[0], PageCheck)  # a bare path too


def test_image_paths_follow_the_loads_model_config_then_the_environment_then_default_on():
    assert paths_allowed(None, {}) and paths_allowed({"image_paths": None}, {})
    assert not paths_allowed(None, {"SMARTECG_PYFUNC_PATHS": "off"})
    assert not paths_allowed({"image_paths": None}, {"SMARTECG_PYFUNC_PATHS": "OFF"})
    assert paths_allowed({"image_paths": True}, {"SMARTECG_PYFUNC_PATHS": "off"})  # the load said
    assert not paths_allowed({"image_paths": False}, {"SMARTECG_PYFUNC_PATHS": "on"})
    with pytest.raises(ValueError, match="SMARTECG_PYFUNC_PATHS is 'maybe': set it to on or off"):
        paths_allowed(None, {"SMARTECG_PYFUNC_PATHS": "maybe"})


def test_prediction_frame_has_one_row_per_page():
    out = prediction_frame(["A", "B"], np.array([[0.2, 0.8], [0.9, 0.1]]), np.array([False, True]))
    assert list(out.columns) == ["class", "p_A", "p_B", "uncertain", "status", "reason"]
    assert list(out["class"]) == ["B", "A"] and list(out["status"]) == ["read", "read"]
    assert list(out["uncertain"]) == [False, True]
