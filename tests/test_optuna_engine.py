"""The Optuna engine with real Optuna, real Keras training and a real SQLite study, on tiny pages."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import noise_in, smartecg

from automl.engines.base import TrainingData
from automl.engines.optuna_engine import OptunaEngine
from features.dataset import scan
from features.synthetic import LayoutMix, generate_dataset

pytestmark = pytest.mark.slow

# A small 1-D network on the lead signals learns these pages within a few epochs; the same
# network at a learning rate a thousand times too small stays at chance: the pruner's target.
GOOD = {"family": "conv1d", "signal_length": 128, "width": 16, "depth": 2, "dropout": 0.1,
        "learning_rate": 3e-3, "batch_size": 8, "class_weights": True, "epochs": 4, "augment": False}
BAD = {**GOOD, "learning_rate": 1e-7}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = generate_dataset(tmp_path_factory.mktemp("optuna-data"), 8, seed=31,
                            layouts=LayoutMix(six_by_two=0.3), progress=False)
    return scan(root, progress=False).frame


def training_data(frame, workdir: Path) -> TrainingData:
    classes = sorted(set(frame["label"]))
    return TrainingData(paths=[str(p) for p in frame["path"]], X=np.zeros((len(frame), 1)),
                        y=frame["label"].to_numpy(dtype=object), classes=classes, features=None,
                        metric="macro_f1", seed=0, workdir=workdir, experiment="test-optuna")


def optuna_trials(storage: str, study: str) -> list:
    import optuna

    return optuna.load_study(study_name=study, storage=storage).trials


def test_a_bad_trial_is_pruned_and_a_second_search_resumes_the_study(pages, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    logged = []
    engine = OptunaEngine(families=("conv1d",), min_epochs=4, max_epochs=4, storage=storage, study="s",
                          max_trials=3, enqueue=[GOOD, GOOD, BAD], candidates=1)
    started = time.monotonic()
    candidates = engine.search(training_data(pages, tmp_path / "w1"), 240, lambda t: logged.append(t) or None)
    assert time.monotonic() - started < 240
    statuses = [t.status for t in logged]
    assert statuses[:2] == ["ok", "ok"] and statuses[2] == "pruned", [(t.status, t.score, t.error) for t in logged]
    assert len(logged[2].extra["epochs"]) < 4  # stopped before its last epoch
    assert all(len(t.extra["epochs"]) == 4 for t in logged[:2])  # per-epoch curves for MLflow
    assert len(candidates) == 1 and candidates[0].validation_score == max(t.score for t in logged[:2])
    proba = candidates[0].model.predict_proba([str(p) for p in pages["path"][:3]])
    assert proba.shape == (3, 5) and np.allclose(proba.sum(axis=1), 1.0)
    # Its best epoch's probabilities on the validation pages come along, for calibration.
    from automl.calibration import expected_calibration_error
    from automl.engines.deep_training import score_probabilities

    calibration = candidates[0].calibration
    assert calibration.proba.shape == (len(calibration.y), 5) and "validation pages" in calibration.source
    assert score_probabilities("macro_f1", calibration.y, calibration.proba) == pytest.approx(
        candidates[0].validation_score)
    assert 0.0 <= expected_calibration_error(calibration.y, calibration.proba) <= 1.0

    # The study lives in the storage: another search resumes it, and the trial count grows.
    stored = optuna_trials(storage, "s")
    assert len(stored) == 3
    # The study keeps the curves too: per epoch, the loss beside the pruner's intermediate values.
    for trial in stored:
        curve = trial.user_attrs["epochs"]
        assert [e["val_score"] for e in curve] == pytest.approx([trial.intermediate_values[e["epoch"]] for e in curve])
    assert [len(t.user_attrs["epochs"]) for t in stored] == [len(t.extra["epochs"]) for t in logged]
    again = OptunaEngine(families=("conv1d",), min_epochs=1, max_epochs=2, storage=storage, study="s", max_trials=1)
    again.search(training_data(pages, tmp_path / "w2"), 120, lambda t: None)
    assert len(optuna_trials(storage, "s")) == 4


def test_missing_pretrained_weights_fail_one_trial_in_one_line_and_the_search_goes_on(pages, tmp_path):
    logged = []
    imagenet = {"family": "transfer", "backbone": "imagenet", "view": "leads", "height": 32, "suppress_grid": True,
                "dropout": 0.1, "learning_rate": 1e-3, "batch_size": 8, "class_weights": True, "epochs": 1,
                "augment": False}
    own = {**imagenet, "backbone": "leads", "unfreeze_blocks": 1, "fine_tune_lr_factor": 0.1}
    engine = OptunaEngine(families=("transfer", "conv1d"), heights=(32,), min_epochs=1, max_epochs=1,
                          storage=f"sqlite:///{tmp_path / 'optuna.db'}", study="w", max_trials=3,
                          backbones=("leads", "imagenet"), enqueue=[own, imagenet, {**GOOD, "epochs": 1}],
                          weights_dir=str(tmp_path / "no-weights"))
    engine.search(training_data(pages, tmp_path / "w"), 180, lambda t: logged.append(t) or None)
    assert [t.status for t in logged] == ["failed", "failed", "ok"]
    assert logged[0].error.startswith("WeightsUnavailable: no pretrained leads backbone in")
    assert "smartecg pretrain" in logged[0].error
    assert logged[1].error.startswith("WeightsUnavailable: ImageNet weights efficientnetb0_notop.h5 not found")
    assert all("\n" not in t.error and "--weights-dir" in t.error for t in logged[:2])


def test_a_keras_champion_from_a_search_predicts_in_a_fresh_process(tmp_path):
    data = generate_dataset(tmp_path / "data", 8, seed=32, progress=False)
    spec = tmp_path / "deep.yaml"
    spec.write_text(json.dumps({  # YAML is a superset of JSON
        "name": "smartecg-deep-test", "registry_name": "deeptest", "metric": "macro_f1", "features": ["trace"],
        "reserve_seconds": 15,
        "engines": {"optuna": {"weight": 1, "families": ["conv1d"], "signal_lengths": [128], "min_epochs": 2,
                               "max_epochs": 3, "max_trials": 2, "candidates": 1,
                               "validation_share": 0.4}},  # 15 validation pages: enough to calibrate on
    }))
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    # Both URIs: an earlier test's mlflow.set_registry_uri() leaves MLFLOW_REGISTRY_URI in os.environ.
    env = {"SMARTECG_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    search = smartecg("search", "--data", data, "--budget", "150s", "--experiment", spec, env=env, cwd=tmp_path)
    out = search.stdout
    assert "deeptest v1 is now 'champion'" in out and "best: optuna conv1d" in out, out
    # The network is calibrated on its validation pages, and its holdout pages explained with Grad-CAM.
    assert "calibration: temperature scaling (T = " in out and "explained " in out, out
    assert (tmp_path / "mlruns" / "optuna.db").exists()  # the study persists beside MLflow's store
    page = str(sorted(data.glob("MI/*.jpg"))[0])
    code = ("import sys, mlflow.pyfunc, pandas as pd\n"
            "print(open(mlflow.pyfunc.get_model_dependencies(sys.argv[1])).read().replace('\\n', ' '))\n"
            "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
            "print(m.predict(pd.DataFrame({'image': [sys.argv[2]]})).to_json())\n")
    result = subprocess.run([sys.executable, "-c", code, "models:/deeptest@champion", page], capture_output=True,
                            text=True, timeout=300, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert "tensorflow==" in lines[-2] and "keras==" in lines[-2]  # a fresh environment can load the network
    answer = json.loads(lines[-1])
    assert set(answer) == {"class", "uncertain", "status", "reason",
                           *(f"p_{c}" for c in ("Abnormal_HeartBeat", "Covid_19", "MI", "MI_History", "Normal"))}
    assert answer["status"] == {"0": "read"}  # the network's champion carries the gate its search fitted

    # Piped, as in CI and cron, the search and predict print their own lines only: TensorFlow's and
    # the worker's noise is in the log file the summary names (issue 24).
    predict = smartecg("predict", page, "--model", "models:/deeptest@champion", env=env, cwd=tmp_path)
    assert predict.stdout.startswith(f"{page}: ")
    for run in (search, predict):
        assert noise_in(run.stdout) == [] and noise_in(run.stderr) == [], (run.args, run.stdout, run.stderr)
        assert "\r" not in run.stdout + run.stderr  # plain lines, no rewriting in place
    assert re.search(r"^search \d+s / 2m30s \| .+ \| \d+ trials", search.stderr, re.MULTILINE), search.stderr
    (said,) = re.findall(r"^library messages .*: (\S+) \(also the run's logs/library\.log\)$", out, re.MULTILINE)
    assert Path(said).parent == tmp_path / "cache" / "logs"
    logged = Path(said).read_text()
    assert "----- automl.engines.optuna_worker (exit 0)" in logged and noise_in(logged), logged[:2000]
    (predict_log,) = (tmp_path / "cache" / "logs").glob("predict-*.log")
    assert noise_in(predict_log.read_text())  # TensorFlow's, loading the network


def test_a_study_searched_with_other_choices_is_refused_in_one_line_and_default_names_keep_them_apart(tmp_path):
    import optuna

    from automl.engines.optuna_engine import default_study_name

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="mine", direction="maximize")
    study.optimize(lambda trial: float(trial.suggest_categorical("family", ["conv1d"]) == "conv1d"), n_trials=1)
    frame = pd.DataFrame({"path": [f"p{i}.jpg" for i in range(10)], "label": ["MI", "Normal"] * 5})
    data = training_data(frame, tmp_path / "w")
    engine = OptunaEngine(families=("cnn", "conv1d"), storage=storage, study="mine")
    with pytest.raises(ValueError, match=r"'mine' .* other choices \(family: \['conv1d'\] -> \['cnn', 'conv1d'\]\)"):
        engine.search(data, 60, lambda t: None)
    assert not (tmp_path / "w" / "optuna" / "worker.log").exists()  # refused before any worker started
    # Without a study name, each set of choices gets its own study, and the same spec its same one.
    job = {"families": ["conv1d"], "views": ["leads"], "heights": [48], "signal_lengths": [128]}
    wider = {**job, "families": ["cnn", "conv1d"]}
    assert default_study_name("x", job) == default_study_name("x", dict(job)) != default_study_name("x", wider)
