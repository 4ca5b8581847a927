"""The search controller end to end: real TPOT, a real SQLite MLflow store, real subprocesses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import free_port, smartecg, smartecg_command, wait_until_answering

from features.synthetic import LayoutMix, generate_dataset

pytestmark = pytest.mark.slow

LOAD_AND_PREDICT = """
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
paths = sys.argv[2:]
by_path = model.predict(pd.DataFrame({"image": paths}))
by_bytes = model.predict(pd.DataFrame({"image_bytes": [open(p, "rb").read() for p in paths]}))
print(json.dumps({"path": by_path.to_dict("list"), "bytes": by_bytes.to_dict("list")}))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A first search on a small synthetic set of both layouts, into a fresh SQLite store: it becomes the champion."""
    root = tmp_path_factory.mktemp("search")
    data = generate_dataset(root / "data", 10, seed=21, layouts=LayoutMix(six_by_two=0.4, gridless=0.3), progress=False)
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    env = {"SMARTECG_CACHE": str(root / "cache"), "MLFLOW_TRACKING_URI": uri}
    smartecg("data", "report", data, "--out", root / "report", env=env)  # its audits go on the model card
    # 75 s: TPOT's slice holds enough pipelines, and their refits and out-of-fold predictions,
    # on a busy 2-core machine too (the assertions below need >= 5 trials and a calibrated champion).
    first = smartecg("search", "--data", data, "--budget", "75s", "--experiment", "quick", "--quiet",
                     env=env, cwd=root)
    return SimpleNamespace(root=root, data=data, uri=uri, env=env, first=first)


def client_for(uri):
    from automl.tracking import use_store

    return use_store(uri)


def search_runs(client, experiment="smartecg-quick"):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=5000)
    parents = [r for r in runs if r.data.tags.get("smartecg.kind") == "search"]
    return runs, sorted(parents, key=lambda r: r.info.start_time)


def children(runs, parent):
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def test_every_evaluated_pipeline_is_a_nested_run_and_the_best_is_champion(store):
    assert "is now 'champion'" in store.first.stdout, store.first.stdout
    assert "  layout 3x4_rhythm: n=" in store.first.stdout and "  size landscape" in store.first.stdout
    client = client_for(store.uri)
    runs, parents = search_runs(client)
    parent = parents[0]
    trials = children(runs, parent)
    assert parent.info.status == "FINISHED"
    assert len(trials) == int(parent.data.metrics["trials"]) >= 5
    engines = [t.data.tags["smartecg.engine"] for t in sorted(trials, key=lambda t: t.info.start_time)]
    # The portfolio's defaults first, then TPOT's pipelines, then the ensemble of the best.
    assert engines[0] == "portfolio" and "tpot" in engines and set(engines) <= {"portfolio", "tpot", "ensemble"}
    assert all("pipeline" in t.data.params for t in trials)
    assert all(t.info.status in ("FINISHED", "FAILED") for t in trials)
    scored = [t for t in trials if "val_macro_f1" in t.data.metrics]
    assert scored and all("fit_seconds" in t.data.metrics for t in scored)
    # Candidates carry their holdout scores; the parent has the best one's and the plots.
    assert any("holdout_macro_f1" in t.data.metrics for t in trials)
    assert "holdout_macro_f1" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "holdout")}
    assert {"holdout/holdout_confusion.png", "holdout/holdout_roc.png"} <= artifacts
    champion = client.get_model_version_by_alias("smartecg", "champion")
    assert str(champion.version) == "1" and champion.tags["engine"] == parent.data.tags["smartecg.selected"].split(":")[0]
    assert float(champion.tags["holdout_macro_f1"]) == pytest.approx(parent.data.metrics["holdout_macro_f1"], abs=1e-5)
    # Metrics per layout and page size sit beside the overall ones, on the parent and the version.
    layout_counts = {k.split(".")[1]: v for k, v in parent.data.metrics.items()
                     if k.startswith("holdout_by_layout.") and k.endswith(".n")}
    size_counts = [v for k, v in parent.data.metrics.items() if k.startswith("holdout_by_size.") and k.endswith(".n")]
    assert sum(layout_counts.values()) == sum(size_counts) == int(champion.tags["holdout_size"])
    assert set(layout_counts) <= {"3x4_rhythm", "6x2", "6x2_gridless"} and "3x4_rhythm" in layout_counts
    assert all(f"holdout_by_layout.{g}.macro_f1" in champion.tags for g in layout_counts)


def test_the_champion_predicts_paths_and_bytes_in_a_fresh_process(store):
    pages = sorted(str(p) for p in store.data.glob("*/*.jpg"))[::10]
    out = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, "models:/smartecg@champion", *pages],
                         capture_output=True, text=True, env={**os.environ, **store.env}, timeout=300, check=True)
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["path"] == answer["bytes"]
    classes = [c[2:] for c in answer["path"] if c.startswith("p_")]
    assert len(classes) == 5 and len(answer["path"]["class"]) == len(pages)
    assert set(answer["path"]["class"]) <= set(classes)
    totals = np.sum([answer["path"][f"p_{c}"] for c in classes], axis=0)
    assert np.allclose(totals, 1.0)


def test_pull_writes_a_model_that_loads_anywhere(store, tmp_path):
    out = smartecg("pull", "--out", tmp_path / "champion", env=store.env, cwd=store.root)
    folder = tmp_path / "champion" / "model"
    assert str(folder) in out.stdout and (folder / "MLmodel").exists()
    card = (tmp_path / "champion" / "MODEL_CARD.md").read_text()
    assert "version 1" in card and "macro_f1" in card and "champion" in card
    assert "per layout and page size" in card and "| layout | 3x4_rhythm |" in card
    page = str(sorted(store.data.glob("MI/*.jpg"))[0])
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(folder), page], capture_output=True,
                            text=True, env=env, cwd="/", timeout=300, check=True)
    assert len(json.loads(result.stdout.strip().splitlines()[-1])["path"]["class"]) == 1
    assert "MI" in smartecg("predict", page, "--model", folder, env=store.env).stdout
    # Scored on its own data folder (mostly its training pages) it must be far above chance (0.2).
    shown = smartecg("evaluate", store.data, "--model", folder, "--out", tmp_path / "scores", env=store.env).stdout
    scores = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert scores["n"] == 50 and scores["accuracy"] > 0.6
    # Both layouts of the data are scored on their own (a 40% share of 6x2 pages, some gridless).
    assert sum(g["n"] for g in scores["by_group"]["layout"].values()) == 50
    assert {"3x4_rhythm", "6x2"} <= set(scores["by_group"]["layout"])
    assert "layout 6x2:" in shown and "size landscape" in shown
    assert (tmp_path / "scores" / "confusion.png").exists()


def test_the_search_calibrates_its_models_explains_holdout_pages_and_writes_a_model_card(store, tmp_path):
    client = client_for(store.uri)
    runs, parents = search_runs(client)
    parent = parents[0]
    champion = client.get_model_version_by_alias("smartecg", "champion")
    # TPOT's pipelines are refitted on every training page: calibrated on out-of-fold predictions.
    assert champion.tags["calibration"].startswith("Platt (sigmoid) scaling per class, fitted on")
    assert "out-of-fold predictions" in champion.tags["calibration"]
    assert 0.0 <= float(champion.tags["holdout_ece"]) <= 1.0 and "holdout_ece_uncalibrated" in champion.tags
    candidates = [t for t in children(runs, parent) if "holdout_macro_f1" in t.data.metrics]
    assert candidates and all("smartecg.calibration" in t.data.tags and "holdout_ece" in t.data.metrics
                              for t in candidates)
    # One holdout page per class (quick.yaml) explained with the best model while the budget lasts
    # (the last ones may not fit on a slow machine), overlays logged.
    shown = {a.path for a in client.list_artifacts(parent.info.run_id, "explanations")}
    overlays = [p for p in shown if p.endswith(".lime.png")]
    assert len(overlays) >= 3 and "explanations/explanations.json" in shown
    local = client.download_artifacts(parent.info.run_id, "explanations/explanations.json", str(tmp_path))
    records = json.loads(Path(local).read_text())
    assert len(records) == len(overlays) and len({r["true_class"] for r in records}) == len(records)
    assert all(r["summary"].startswith(f"{r['class']} ") and sum(r["lead_shares"].values()) == pytest.approx(1, abs=1e-3)
               for r in records)
    assert f"explained {len(records)} holdout pages" in store.first.stdout
    assert "calibration: Platt" in store.first.stdout
    card = Path(client.download_artifacts(parent.info.run_id, "MODEL_CARD.md", str(tmp_path))).read_text()
    assert "## Calibration" in card and "expected calibration error on the holdout" in card
    assert "## Shortcut audit" in card and "- page metadata (size, file size, colour mode): OK" in card
    assert "| MI | " in card and "## Known limits" in card
    assert "checked first by a gate fitted on the" in card


def test_explain_and_predict_explain_name_the_leads_of_the_tpot_champions_answer(store, tmp_path):
    import re

    page = str(sorted(store.data.glob("MI/*.jpg"))[0])
    out = smartecg("explain", page, "--method", "lime", "--samples", "80", "--out", tmp_path / "ex",
                   env=store.env).stdout
    leads = "|".join(["aVR", "aVL", "aVF", "III", "II", "I", "V1", "V2", "V3", "V4", "V5", "V6"])
    assert re.search(rf"{re.escape(page)}: \w+ [01]\.\d\d - most evidence in ({leads})\b", out), out
    overlay = tmp_path / "ex" / f"{Path(page).stem}.lime.png"
    record = json.loads(overlay.with_suffix(".json").read_text())
    assert overlay.stat().st_size > 10_000 and record["method"] == "lime" and record["summary"] in out
    wrong = smartecg("explain", page, "--method", "gradcam", "--out", tmp_path / "ex", env=store.env, check=False)
    assert wrong.returncode == 2 and "Grad-CAM needs a network" in wrong.stderr and "--method lime" in wrong.stderr
    answer = smartecg("predict", page, "--explain", "--json", "--out", tmp_path / "px", env=store.env).stdout
    row = json.loads(answer.strip().splitlines()[-1])
    assert isinstance(row["uncertain"], bool) and Path(row["explanation"]["overlay"]).exists()
    missing = smartecg("explain", tmp_path / "nope.jpg", "--out", tmp_path / "ex", env=store.env, check=False)
    assert missing.returncode == 1 and "nope.jpg" in missing.stderr
    # The champion carries the page gate its search fitted: a blank page is refused, a turned one read.
    from PIL import Image

    blank, turned = tmp_path / "blank.png", tmp_path / "turned.png"
    Image.new("L", (2200, 1570), 255).save(blank)
    Image.open(page).rotate(180).save(turned)
    answers = smartecg("predict", blank, turned, env=store.env, check=False)
    assert answers.returncode == 1 and f"{blank}: refused: the page is blank" in answers.stdout
    assert f"{turned}: " in answers.stdout and "half turn" in answers.stdout


class PriorEngine:
    """A deliberately useless engine: always the class shares of the training set."""

    name = "prior"

    def search(self, data, seconds, log_trial):
        from sklearn.dummy import DummyClassifier

        from automl.engines.base import Candidate, Trial
        from automl.model import ECGModel

        classifier = DummyClassifier(strategy="prior").fit(data.X, data.y)
        run_id = log_trial(Trial("prior", 0, "DummyClassifier(strategy='prior')", {}, 0.0, 0.01, "ok"))
        model = ECGModel(data.features, classifier, data.classes, engine="prior", description="prior")
        return [Candidate("prior", model, 0.0, {}, run_id, "prior")]


def test_a_worse_search_leaves_the_champion_and_becomes_challenger(store, monkeypatch):
    from automl.controller import run_search
    from automl.experiment import load_spec

    monkeypatch.setenv("SMARTECG_CACHE", store.env["SMARTECG_CACHE"])
    result = run_search(load_spec("quick"), 30, data=store.data, tracking_uri=store.uri, progress=False,
                        engine_factory=lambda spec: PriorEngine())
    assert result.promotion.alias == "challenger" and "does not beat champion v1" in result.promotion.reason
    client = client_for(store.uri)
    assert str(client.get_model_version_by_alias("smartecg", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("smartecg", "challenger").version) == result.promotion.version


def test_kill_9_mid_search_then_search_again(store, tmp_path):
    """Runs of the killed search end KILLED, the registry is intact, the next search completes."""
    client = client_for(store.uri)
    _, before = search_runs(client)
    proc = subprocess.Popen(smartecg_command() + ["search", "--data", str(store.data), "--budget", "90s",
                                                  "--experiment", "quick", "--quiet"],
                            env={**os.environ, **store.env}, cwd=store.root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once trials are being logged
            runs, parents = search_runs(client)
            if len(parents) > len(before) and children(runs, parents[-1]):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the search logged no trial within 60 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(3)  # the TPOT worker notices its parent is gone within a second and stops its group
    leftover = subprocess.run(["pgrep", "-f", "automl.engines.tpot_worker"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "a TPOT worker outlived the killed search"

    # Corrupt files added meanwhile are reported, and the next search completes anyway.
    data = store.data
    truncated = data / "Normal" / "truncated.jpg"
    truncated.write_bytes(next(data.glob("Normal/*.jpg")).read_bytes()[:3000])
    not_an_image = data / "MI" / "notes.jpg"
    not_an_image.write_text("not an ECG")
    try:
        again = smartecg("search", "--data", data, "--budget", "50s", "--experiment", "quick", "--quiet",
                         env=store.env, cwd=store.root)
    finally:
        truncated.unlink()
        not_an_image.unlink()
    assert "truncated.jpg" in again.stderr and "notes.jpg" in again.stderr
    runs, parents = search_runs(client)
    killed = parents[len(before)]
    assert killed.info.status == "KILLED"
    assert parents[-1].info.status == "FINISHED"
    assert all(r.info.status != "RUNNING" for r in runs)
    versions = {str(v.version) for v in client.search_model_versions("name='smartecg'")}
    assert {"1", "2"} <= versions  # nothing registered before was lost
    champion = client.get_model_version_by_alias("smartecg", "champion")
    assert champion.status == "READY"


@pytest.mark.parametrize("make, expected", [
    (lambda root: (root / "Bradycardia").mkdir(parents=True), "unknown class folder 'Bradycardia'"),
    (lambda root: root.mkdir(), "no class folders found"),
], ids=["unknown-class", "empty-dataset"])
def test_bad_datasets_stop_a_search_with_one_line(tmp_path, make, expected):
    root = tmp_path / "data"
    make(root)
    result = smartecg("search", "--data", root, "--budget", "30s", "--tracking-uri",
                      f"sqlite:///{tmp_path / 'mlflow.db'}", check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("smartecg: error:"), result.stderr


def test_pull_and_predict_without_a_registered_model_say_so_in_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"
    for args in (["pull", "--out", tmp_path / "out"], ["predict", __file__]):
        result = smartecg(*args, "--tracking-uri", uri, check=False)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("smartecg: error:"), result.stderr


def test_ui_serves_the_store_on_localhost(tmp_path):
    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    server = subprocess.Popen(smartecg_command() + ["ui", "--port", str(port), "--tracking-uri", uri],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/health", server, "the UI server", seconds=60)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


class BrokenEngine:
    name = "broken"

    def search(self, data, seconds, log_trial):
        raise RuntimeError("worker exited with status 1")


def test_an_engine_that_crashes_is_reported_and_the_search_still_ends_cleanly(store, monkeypatch, capsys):
    from automl.controller import run_search
    from automl.experiment import load_spec

    monkeypatch.setenv("SMARTECG_CACHE", store.env["SMARTECG_CACHE"])
    result = run_search(load_spec("quick"), 20, data=store.data, tracking_uri=store.uri, progress=True,
                        engine_factory=lambda spec: BrokenEngine())
    assert result.best is None and result.promotion is None
    assert "tpot: failed (RuntimeError: worker exited with status 1)" in capsys.readouterr().err
    run = client_for(store.uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert "worker exited" in run.data.tags["smartecg.engine_error.tpot"]
