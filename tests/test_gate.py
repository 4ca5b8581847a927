"""The page gate: ECG pages are read (turned ones the right way round), everything else is refused."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression

from automl.model import ECGModel
from automl.predict import predict_files
from automl.registry import write_model_files
from features.gate import ORIENTATIONS, READ, REFUSED, TURNED, PageGate, _TURNS
from features.handcrafted import PageFeatures
from features.imageio import load_image
from features.not_ecg import not_ecg_pages
from features.synthetic import LayoutMix, generate_dataset, make_page

# A turned page is made by applying its turn to the upright page; the gate must name that turn.
TURNED_WAYS = [name for name in ORIENTATIONS if name != "upright"]


def _turned(image: np.ndarray, orientation: str) -> np.ndarray:
    return np.ascontiguousarray(_TURNS[orientation][0](image))


@pytest.fixture(scope="module")
def mixed_pages(tmp_path_factory):
    """Training and test pages of every layout the generator prints (3x4, 6x2, gridless 6x2)."""
    mix = LayoutMix(six_by_two=0.4, gridless=0.5)
    train = generate_dataset(tmp_path_factory.mktemp("gate-train"), 6, seed=11, layouts=mix, progress=False)
    test = generate_dataset(tmp_path_factory.mktemp("gate-test"), 1, seed=12, layouts=mix, progress=False)
    return sorted(map(str, train.glob("*/*.jpg"))), sorted(map(str, test.glob("*/*.jpg")))


@pytest.fixture(scope="module")
def gate(mixed_pages):
    return PageGate().fit(mixed_pages[0])


def test_generated_pages_are_read_and_every_turn_is_found_and_undone(gate, mixed_pages):
    for path in mixed_pages[1]:
        upright = load_image(path, mode="RGB")
        check = gate.check(path)
        assert check.status == READ and check.reason == "", check
        for orientation in TURNED_WAYS:
            turned = gate.check(_turned(upright, orientation))
            assert turned.status == TURNED and turned.orientation == orientation, (path, turned)
            assert "right way round" in turned.reason
            assert np.array_equal(turned.source, upright)  # read exactly as the upright page


@pytest.mark.parametrize("kind", list(not_ecg_pages()))
def test_what_is_not_an_ecg_page_is_refused_whichever_way_it_lies(gate, kind):
    image = not_ecg_pages()[kind]
    for orientation in ORIENTATIONS:
        check = gate.check(_turned(image, orientation))
        assert check.status == REFUSED and "send a 12-lead ECG page" in check.reason, (kind, orientation, check)


def test_unreadable_bytes_are_refused_with_the_reason_not_raised(gate):
    check = gate.check(b"%PDF-1.4 this is not an image")
    assert check.status == REFUSED and check.reason and not check.readable


def test_without_a_fitted_gate_a_blank_page_is_still_refused_and_a_page_read(mixed_pages):
    unfitted = PageGate()
    assert unfitted.check(not_ecg_pages()["blank"]).status == REFUSED
    check = unfitted.check(mixed_pages[1][0])
    assert check.status == READ and np.isnan(check.novelty)


@pytest.mark.slow  # saves and loads a real MLflow model
def test_the_pyfunc_says_refused_and_turned_and_reads_a_turned_page_as_upright(gate, mixed_pages, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    train, test = mixed_pages
    features = PageFeatures(sets=("trace",), progress=False)
    labels = [Path(p).parent.name for p in train]
    model = ECGModel(features, LogisticRegression(max_iter=2000).fit(features.transform(train), labels), sorted(set(labels)))
    model.gate = gate
    loaded = mlflow.pyfunc.load_model(str(write_model_files(model, tmp_path / "model")))

    page = test[0]
    half_turn = io.BytesIO()
    Image.open(page).rotate(180).save(half_turn, format="PNG")
    blank = io.BytesIO()
    Image.fromarray(not_ecg_pages()["bar chart"]).save(blank, format="PNG")
    answer = loaded.predict(pd.DataFrame({"image_bytes": [open(page, "rb").read(), half_turn.getvalue(),
                                                          blank.getvalue()]}))
    assert list(answer["status"]) == [READ, TURNED, REFUSED]
    assert "half turn" in answer["reason"][1] and "ECG" in answer["reason"][2]
    assert answer["class"][1] == answer["class"][0] and answer["class"][2] == ""
    p = answer.filter(like="p_").to_numpy()
    # Turned back, the page is read exactly as the upright page decoded in full (the file itself is
    # read through JPEG's reduced decoding, hence not to the last digit).
    assert np.allclose(p[1], model.predict_proba([load_image(page, mode="RGB")])[0], atol=1e-6)
    assert np.isnan(p[2]).all()



def test_a_page_unlike_the_training_pages_raises_the_uncertain_flag(tiny_synthetic):
    # Trained on 3x4 pages on graph paper only; a 6x2 page on blank paper is unlike all of them.
    upright_pages = sorted(map(str, tiny_synthetic.glob("*/*.jpg")))
    narrow = PageGate().fit(upright_pages)
    check = narrow.check(np.asarray(make_page("MI", 5, layout="6x2", grid=False).image))
    assert check.unlike_training and check.novelty > 1.0
    confident = np.array([[0.96, 0.01, 0.01, 0.01, 0.01]])
    model = ECGModel(None, None, ["A", "B", "C", "D", "E"])
    assert model.uncertain(confident, [check])[0]
    assert not model.uncertain(confident, [narrow.check(upright_pages[0])])[0]  # one of its own pages


@pytest.mark.slow  # saves and loads a real MLflow model
def test_predict_names_a_refused_page_and_says_when_a_page_was_turned(gate, mixed_pages, tmp_path, capsys):
    train = mixed_pages[0]
    features = PageFeatures(sets=("trace",), progress=False)
    labels = [Path(p).parent.name for p in train]
    model = ECGModel(features, LogisticRegression(max_iter=2000).fit(features.transform(train), labels), sorted(set(labels)))
    model.gate = gate
    folder = write_model_files(model, tmp_path / "model")
    turned, chart = tmp_path / "turned.png", tmp_path / "chart.png"
    Image.open(mixed_pages[1][0]).transpose(Image.Transpose.ROTATE_90).save(turned)
    Image.fromarray(not_ecg_pages()["line plot"]).save(chart)
    assert predict_files([str(turned), str(chart)], str(folder)) == 1  # one page could not be classified
    out = capsys.readouterr().out
    assert f"{turned}: " in out and "quarter turn" in out
    assert f"{chart}: refused: " in out and "ECG" in out


@pytest.mark.slow  # saves and loads a real MLflow model
def test_evaluate_lists_the_pages_the_gate_refuses_and_scores_the_rest(gate, mixed_pages, tmp_path, capsys):
    import shutil

    from automl.predict import evaluate_folder

    train, test = mixed_pages
    features = PageFeatures(sets=("trace",), progress=False)
    labels = [Path(p).parent.name for p in train]
    model = ECGModel(features, LogisticRegression(max_iter=2000).fit(features.transform(train), labels), sorted(set(labels)))
    model.gate = gate
    folder = write_model_files(model, tmp_path / "model")
    data = tmp_path / "data"
    for path in test:
        (data / Path(path).parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / Path(path).parent.name)
    Image.fromarray(not_ecg_pages()["text"]).save(data / "Normal" / "scanned-letter.png")
    evaluation = evaluate_folder(str(data), str(folder))
    assert len(evaluation.y_true) == len(test)  # the letter left out, every ECG page scored
    err = capsys.readouterr().err
    assert "refused " in err and "scanned-letter.png" in err and "send a 12-lead ECG page" in err


def test_a_search_leaves_out_a_blank_page_in_a_class_folder_with_a_line(tiny_synthetic, tmp_path):
    import io as text_io
    import shutil

    from automl.budget import Budget
    from automl.controller import _features
    from automl.experiment import builtin_spec_path, load_spec
    from automl.progress import SearchProgress
    from features.dataset import assign_splits, scan

    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic, data)
    Image.new("L", (2200, 1570), 255).save(data / "Normal" / "blank-scan.png")
    Image.fromarray(not_ecg_pages()["noise"]).save(data / "MI" / "noise.png")
    frame = assign_splits(scan(data, progress=False), fractions=(0.6, 0.2, 0.2), seed=0)
    shown_to = text_io.StringIO()
    shown = SearchProgress(Budget(60), "macro_f1", stream=shown_to, enabled=True)
    spec = load_spec(builtin_spec_path("quick"))
    vectors, kept, skipped = _features(frame, spec, shown, cache_dir=tmp_path / "cache")
    assert set(skipped) == {str(data / "Normal" / "blank-scan.png"), str(data / "MI" / "noise.png")}
    assert "the page is blank" in skipped[str(data / "Normal" / "blank-scan.png")]
    assert len(kept) == len(frame) - 2 == len(vectors)
    assert "skipped " in shown_to.getvalue() and "blank-scan.png" in shown_to.getvalue()
