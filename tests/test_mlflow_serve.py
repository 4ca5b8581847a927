"""A registered model served by MLflow's own server (`mlflow models serve`), asked over JSON.

A real server process on a free local port, the model registered in a temporary SQLite store,
pages sent as base64 in ``dataframe_split`` JSON: what a client of the champion does.
"""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from cli_helpers import free_port

pytestmark = pytest.mark.slow  # trains, registers and starts a server: about half a minute

NAME = "served-json"
START_SECONDS = 90  # the server imports MLflow, then loads the model in its worker


@pytest.fixture(scope="module")
def store(tiny_synthetic, tmp_path_factory):
    """(tracking URI, the model's classes): a small model registered as ``NAME@champion``."""
    from sklearn.linear_model import LogisticRegression

    from automl.model import ECGModel
    from automl.registry import write_model_files
    from automl.tracking import use_store
    from features.handcrafted import PageFeatures

    tmp = tmp_path_factory.mktemp("mlflow-serve")
    paths = sorted(str(p) for p in tiny_synthetic.glob("*/*.jpg"))
    labels = [Path(p).parent.name for p in paths]
    features = PageFeatures(sets=("trace",), progress=False)
    model = ECGModel(features, LogisticRegression(max_iter=2000).fit(features.transform(paths), labels),
                     sorted(set(labels)), engine="tpot", description="logistic regression on traces")
    folder = write_model_files(model, tmp / "model")

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = use_store(uri)
    experiment = client.create_experiment("mlflow-serve", artifact_location=(tmp / "artifacts").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.create_registered_model(NAME)
    version = client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run.info.run_id).version
    client.set_registered_model_alias(NAME, "champion", version)
    return uri, model.classes, tmp


@pytest.fixture(scope="module")
def server(store):
    """``mlflow models serve`` on the champion with paths off; yields its /invocations URL."""
    uri, _, tmp = store
    port = free_port()
    log = tmp / f"mlflow-serve-{port}.log"
    # MLflow starts `uvicorn` by name: the venv's bin must be on PATH, as when the venv is activated.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "SMARTECG_PYFUNC_PATHS": "off",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "TMPDIR": str(tmp)}
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
             "--env-manager", "local", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"],
            env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_ping(f"http://127.0.0.1:{port}/ping", process, log)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_ping(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            what = f"exited ({process.returncode})" if process.poll() is not None else f"not up in {START_SECONDS} s"
            pytest.fail(f"mlflow models serve {what} before answering {url}; its output:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _ask(url: str, columns: list[str], rows: list[list]) -> list[dict]:
    answer = requests.post(url, json={"dataframe_split": {"columns": columns, "data": rows}}, timeout=60)
    assert answer.status_code == 200, answer.text[:2000]
    return answer.json()["predictions"]


def test_a_base64_page_posted_as_json_gets_its_class_and_probabilities(server, store, tiny_synthetic):
    classes = store[1]
    page = sorted(tiny_synthetic.glob("MI/*.jpg"))[0]
    [row] = _ask(server, ["image_b64"], [[_b64(page.read_bytes())]])
    assert row["status"] == "read" and row["reason"] == "", row
    assert row["class"] in classes
    probabilities = np.array([row[f"p_{c}"] for c in classes], dtype=float)
    assert np.isclose(probabilities.sum(), 1.0) and row["class"] == classes[int(probabilities.argmax())]


def test_bad_rows_are_refused_each_with_its_reason_and_the_good_row_still_read(server, tiny_synthetic):
    page = sorted(tiny_synthetic.glob("Normal/*.jpg"))[0]
    rows = _ask(server, ["image_b64", "image"], [
        [_b64(page.read_bytes()), None],
        ["this is %% not base64", None],
        [_b64(b"%PDF-1.4 a document"), None],
        [None, str(page)],  # a path on the server: switched off by SMARTECG_PYFUNC_PATHS=off
    ])
    assert [row["status"] for row in rows] == ["read", "refused", "refused", "refused"], rows
    assert rows[1]["reason"].startswith("row 1: 'image_b64' is not valid base64")
    assert "not an image" in rows[2]["reason"]  # the page gate's own reason: base64 fine, the bytes no image
    assert rows[3]["reason"].startswith("row 3: the 'image' column") and "image_b64" in rows[3]["reason"]
    assert all(row["class"] == "" for row in rows[1:])


def test_the_models_own_serving_example_is_the_json_the_server_takes(server, store):
    """MLflow writes the input example beside the model as the request to post: it must be answered."""
    import json

    example = json.loads((store[2] / "model" / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["image_b64"]
    answer = requests.post(server, json=example, timeout=60)
    assert answer.status_code == 200, answer.text[:2000]
    [row] = answer.json()["predictions"]
    assert row["status"] in ("read", "turned") and row["class"] in store[1]
