"""`smartecg export --format onnx`: the light runtime answers as the registered model does.

The export runs in its own process with scikit-learn, scikit-image, pandas, MLflow, TensorFlow and
the rest made unimportable, so "needs only numpy, scipy, Pillow and onnxruntime" is what is tested.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automl.calibration import OneVsRestCalibration, TemperatureScaling
from automl.ensemble import SoftVote
from automl.export import ExportError, export_model
from automl.model import ECGModel
from features.gate import PageGate
from features.handcrafted import PageFeatures
from features.not_ecg import not_ecg_pages
from features.synthetic import LayoutMix, generate_dataset

FEATURE_SETS = ("signals", "trace")
# Libraries the registered model needs and the light runtime must not.
HEAVY = ("sklearn", "skimage", "pandas", "mlflow", "tensorflow", "keras", "autokeras", "tpot", "neurokit2",
         "joblib", "tqdm", "matplotlib", "wfdb", "torch", "skl2onnx", "onnx")
_LIGHT_PROCESS = r"""
import importlib.abc, runpy, sys
HEAVY = set(sys.argv[2].split(","))
class NoHeavyLibraries(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"the light runtime imported {name}")
sys.meta_path.insert(0, NoHeavyLibraries())
name, sys.argv = sys.argv[1], [sys.argv[1]] + sys.argv[3:]
try:
    runpy.run_module(name, run_name="__main__", alter_sys=True)
finally:
    print("features from", sys.modules["features"].__file__, file=sys.stderr)
"""


def run_light(folder: Path, pages: list[str]) -> tuple[list[dict], subprocess.CompletedProcess]:
    """``python -m <export> --json PAGE...`` from the folder's parent, heavy libraries blocked."""
    done = subprocess.run([sys.executable, "-c", _LIGHT_PROCESS, folder.name, ",".join(HEAVY), "--json", *pages],
                          cwd=folder.parent, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    assert f"features from {folder.resolve()}" in done.stderr  # its own copy, not SmartECG's
    return [json.loads(line) for line in done.stdout.splitlines()], done


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Training pages (two layouts), and test pages: unseen ones, a half-turned one, a bar chart, a corrupt file."""
    mix = LayoutMix(six_by_two=0.3)
    train = sorted(map(str, generate_dataset(tmp_path_factory.mktemp("export-train"), 5, seed=21, layouts=mix,
                                             progress=False).glob("*/*.jpg")))
    folder = tmp_path_factory.mktemp("export-test")
    test = sorted(map(str, generate_dataset(folder, 2, seed=22, layouts=mix, progress=False).glob("*/*.jpg")))
    Image.open(test[0]).rotate(180).save(folder / "half-turned.png")
    Image.fromarray(not_ecg_pages()["bar chart"]).save(folder / "bar-chart.png")
    (folder / "corrupt.jpg").write_bytes(open(test[1], "rb").read()[:300])
    test += [str(folder / name) for name in ("half-turned.png", "bar-chart.png", "corrupt.jpg")]
    features = PageFeatures(sets=FEATURE_SETS, progress=False)
    labels = np.array([Path(p).parent.name for p in train], dtype=object)
    return dict(train=train, test=test, X=features.transform(train), labels=labels, classes=sorted(set(labels)),
                gate=PageGate().fit(train))


def ensemble_model(pages) -> ECGModel:
    """Logistic regression and boosting in a soft vote, over class indices, isotonic-calibrated."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array([pages["classes"].index(label) for label in pages["labels"]])
    logistic = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=0.5, max_iter=3000))
    boosting = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    members = [logistic.fit(pages["X"], y), boosting.fit(pages["X"], y)]
    vote = SoftVote(members, [0.6, 0.4], [np.arange(5), np.arange(5)], len(pages["classes"]))
    model = ECGModel(PageFeatures(sets=FEATURE_SETS), vote, pages["classes"], engine="ensemble",
                     description="logistic + boosting")
    model.calibrator = OneVsRestCalibration("isotonic").fit(model.uncalibrated_proba(pages["X"]), y)
    return model


def tpot_like_model(pages) -> ECGModel:
    """A TPOT-shaped pipeline (scaler, selector, TPOT's passthrough, calibrated SVC) over class names."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_selection import SelectPercentile
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import RobustScaler
    from sklearn.svm import SVC
    from tpot.builtin_modules import Passthrough

    pipeline = make_pipeline(RobustScaler(), SelectPercentile(percentile=60), Passthrough(),
                             CalibratedClassifierCV(SVC(C=3.0), method="sigmoid", cv=3, ensemble=False))
    pipeline.fit(pages["X"], pages["labels"])
    model = ECGModel(PageFeatures(sets=FEATURE_SETS), pipeline, pages["classes"], engine="tpot", description="svc")
    y = np.array([pages["classes"].index(label) for label in pages["labels"]])
    model.calibrator = OneVsRestCalibration("sigmoid").fit(model.uncalibrated_proba(pages["X"]), y)
    return model


def network_model(pages) -> ECGModel:
    """A small CNN over the lead mosaic (its weights as initialised: parity needs no training), temperature-scaled."""
    from automl.engines.keras_model import KerasClassifier
    from automl.engines.networks import build_network
    from features.tensors import PageTensors

    tensors = PageTensors(view="leads", size=(32, 48))
    network = KerasClassifier(build_network("cnn", tensors.input_shape, len(pages["classes"]), width=8, depth=2), 5)
    model = ECGModel(tensors, network, pages["classes"], engine="optuna", description="cnn")
    model.calibrator = TemperatureScaling()
    model.calibrator.temperature_ = 0.7
    return model


@pytest.mark.slow  # three MLflow models saved and loaded, three exports run in their own processes (~50 s)
@pytest.mark.parametrize("build", [ensemble_model, tpot_like_model, network_model])
def test_the_light_runtime_answers_as_the_pyfunc_on_every_page(pages, build, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    from automl.registry import write_model_files

    model = build(pages)
    model.gate, model.uncertain_below = pages["gate"], 0.6
    pyfunc = mlflow.pyfunc.load_model(str(write_model_files(model, tmp_path / "model")))
    expected = pyfunc.predict(pd.DataFrame({"image": pages["test"]}))
    folder = export_model(model, tmp_path / "ecg_export", source={"name": "test"})

    rows, done = run_light(folder, pages["test"])
    assert len(rows) == len(pages["test"])
    assert done.returncode == 1  # the bar chart and the corrupt file are refused
    for row, (_, want) in zip(rows, expected.iterrows()):
        assert (row["status"], row["class"], row["uncertain"]) == (want["status"], want["class"], want["uncertain"]), row
        got = np.array([np.nan if v is None else v for v in row["probabilities"].values()], dtype=float)
        np.testing.assert_allclose(got, want[[f"p_{c}" for c in model.classes]].to_numpy(dtype=float),
                                   atol=1e-4, rtol=0, err_msg=row["page"])
    statuses = [row["status"] for row in rows]
    assert statuses[-3:] == ["turned", "refused", "refused"] and set(statuses[:-3]) <= {"read"}


def test_calibrators_rebuilt_from_their_numbers_map_as_the_fitted_ones():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "automl" / "light"))
    try:
        from light_runtime import calibrator
    finally:
        sys.path.pop(0)
    from automl.export import calibrator_spec

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=200)
    y = rng.integers(0, 5, size=200)
    unseen = rng.dirichlet(np.ones(5) * 0.5, size=50)
    for fitted in (TemperatureScaling().fit(proba, y), OneVsRestCalibration("sigmoid").fit(proba, y),
                   OneVsRestCalibration("isotonic").fit(proba, y)):
        rebuilt = calibrator(json.loads(json.dumps(calibrator_spec(fitted))))
        np.testing.assert_allclose(rebuilt.transform(unseen), fitted.transform(unseen), atol=1e-9, err_msg=fitted.describe())


def test_a_part_the_light_runtime_cannot_carry_fails_with_one_line_naming_it(tmp_path):
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    class Doubler(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return 2 * X

    rng = np.random.default_rng(0)
    classes = ["A", "B"]
    for sets, classifier, named in [
        (("lbp",), LogisticRegression(), "'lbp' needs scikit-image"),
        (("trace", "rhythm"), LogisticRegression(), "'rhythm' needs neurokit2"),
        (("trace",), make_pipeline(Doubler(), LogisticRegression()), "step 'doubler' (Doubler) has no ONNX converter"),
    ]:
        features = PageFeatures(sets=sets)
        width = len(features.get_feature_names_out())
        classifier.fit(rng.normal(size=(20, width)).astype(np.float32), np.arange(20) % 2)
        with pytest.raises(ExportError) as raised:
            export_model(ECGModel(features, classifier, classes), tmp_path / "out")
        assert named in str(raised.value) and "\n" not in str(raised.value)
        assert not (tmp_path / "out").exists()  # nothing half-written


def test_export_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_model(ECGModel(PageFeatures(sets=("trace",)), None, ["A"]), tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def _registered_champion(store: str, model, tmp_path: Path) -> None:
    """``model`` registered as version 1 of "smartecg", alias champion, with a holdout figure."""
    from automl.registry import MODEL_ARTIFACT, write_model_files
    from automl.tracking import use_store

    client = use_store(store)
    run = client.create_run(client.create_experiment("export-test"))
    client.log_artifacts(run.info.run_id, str(write_model_files(model, tmp_path / "model")), MODEL_ARTIFACT)
    client.create_registered_model("smartecg")
    version = client.create_model_version("smartecg", f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}",
                                          run_id=run.info.run_id, tags={"holdout_macro_f1": "0.875", "engine": "tpot"})
    client.set_registered_model_alias("smartecg", "champion", version.version)
    client.set_terminated(run.info.run_id)


@pytest.mark.slow  # registers a model in a real SQLite store (~15 s)
def test_smartecg_export_writes_a_folder_that_python_dash_m_runs(pages, tmp_path):
    from automl.cli import main

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = tpot_like_model(pages)
    model.gate = pages["gate"]
    _registered_champion(store, model, tmp_path)
    out = tmp_path / "exports" / "ecg_champion"
    assert main(["export", "--format", "onnx", "--out", str(out), "--tracking-uri", store]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["version"] == "1" and manifest["source"]["holdout"] == {"macro_f1": "0.875"}
    assert manifest["features"]["sets"] == list(FEATURE_SETS) and manifest["classes"] == pages["classes"]
    assert "0.875" in (out / "README.md").read_text()
    done = subprocess.run([sys.executable, "-m", out.name, pages["test"][0]], cwd=out.parent, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{pages['test'][0]}: ") and any(c in done.stdout for c in pages["classes"])
    assert done.stderr == ""  # nothing but the answer
    assert main(["export", "--out", str(out), "--tracking-uri", store]) == 2  # not over an export


@pytest.mark.slow  # an export run in its own process (~6 s)
def test_a_page_given_as_bytes_to_the_light_model_in_process_matches_its_path(pages, tmp_path):
    """The runtime's Python entry point takes what ECGModel takes: paths, bytes, arrays."""
    from sklearn.linear_model import LogisticRegression

    model = ECGModel(PageFeatures(sets=("trace",)), LogisticRegression(max_iter=2000).fit(
        PageFeatures(sets=("trace",)).transform(pages["train"]), pages["labels"]), pages["classes"])
    folder = export_model(model, tmp_path / "light")
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); from light_runtime import load; m = load(sys.argv[1]);"
            "p = sys.argv[2]; a = m.classify([p])[0]; b = m.classify([open(p, 'rb').read()])[0];"
            "print(json.dumps([a['probabilities'], b['probabilities'], b['status']]))")
    done = subprocess.run([sys.executable, "-c", code, str(folder), pages["test"][2]], capture_output=True, text=True,
                          timeout=120)
    by_path, by_bytes, status = json.loads(done.stdout)
    assert by_path == by_bytes and status == "read"
    assert np.allclose(list(by_path.values()), model.predict_proba([pages["test"][2]])[0], atol=1e-5)
