"""The AutoKeras engine: real AutoKeras on tiny synthetic pages, stopped inside its slice."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from automl.engines.autokeras_engine import AutoKerasEngine, _log_cut_trial
from automl.engines.folds import validation_split
from automl.engines.base import TrainingData
from automl.engines.trialfile import TrialTail
from automl.evaluate import evaluate
from features.synthetic import generate_dataset

SIZE = (32, 48)
GRACE = 5.0  # seconds past the slice a search may take to return




class TrialRecorder:
    def __init__(self) -> None:
        self.trials = []

    def __call__(self, trial) -> str:
        self.trials.append(trial)
        return f"run-{trial.number}"


def _training_data(root: Path, workdir: Path) -> TrainingData:
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    labels = np.array([Path(p).parent.name for p in paths], dtype=object)
    return TrainingData(paths=paths, X=np.zeros((len(paths), 1)), y=labels, classes=sorted(set(labels)),
                        features=None, metric="macro_f1", seed=7, workdir=workdir)


def _search(data: TrainingData, seconds: float, engine: AutoKerasEngine | None = None, **options):
    log = TrialRecorder()
    engine = engine or AutoKerasEngine(size=SIZE, view="page", **options)
    start = time.monotonic()
    candidates = engine.search(data, seconds, log)
    return candidates, log.trials, time.monotonic() - start


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("ak-pages"), 4, seed=11)  # 20 pages, 4 per class


@pytest.fixture(scope="module")
def sixty_second_search(pages, tmp_path_factory):
    data = _training_data(pages, tmp_path_factory.mktemp("ak-work"))
    return data, *_search(data, 60.0, max_trials=2, epochs=2)


# --- fast: options, split, what a kill leaves ---------------------------------------------

@pytest.mark.parametrize("options", [{"max_trials": 0}, {"epochs": 1.5}, {"view": "strips"}, {"size": (16, 48)},
                                     {"size": "64x96"}, {"batch_size": True}, {"candidates": 0},
                                     {"validation_share": 0.0}, {"validation_share": 0.5}, {"validation_share": "a fifth"}])
def test_options_are_checked(options):
    with pytest.raises(ValueError, match="autokeras option"):
        AutoKerasEngine(**options)


def test_validation_split_is_stratified_with_a_page_of_every_class():
    y = np.repeat(np.arange(5), 4)
    train, val = validation_split(y, 0.2, seed=3)
    assert sorted(set(y[val])) == list(range(5)) and len(val) == 5
    assert sorted(np.concatenate([train, val])) == list(range(20))
    again = validation_split(y, 0.2, seed=3)
    assert np.array_equal(val, again[1])
    with pytest.raises(ValueError, match="at least two training pages"):
        validation_split(np.array([0, 0, 1]), 0.2, seed=0)


def test_every_class_weighs_the_same_in_the_networks_loss():
    """The worker passes these to AutoKeras's fit: MI is about 4% of real pages."""
    from automl.engines.deep_training import balanced_class_weights

    y = np.repeat([0, 1, 3], [80, 4, 16])  # class 2 has no training page
    weights = balanced_class_weights(y, 4)
    totals = [weights[k] * np.sum(y == k) for k in (0, 1, 3)]
    assert totals == pytest.approx([totals[0]] * 3) and sum(totals) == pytest.approx(len(y))
    assert weights[2] == 0.0 and weights[1] == pytest.approx(20 * weights[0])


def test_a_killed_worker_reports_the_trial_in_flight(tmp_path):
    log = TrialRecorder()
    tail = TrialTail(tmp_path / "trials.jsonl", log, "autokeras")
    (tmp_path / "inflight.json").write_text(json.dumps({"trial_id": "1", "start": time.time() - 4,
                                                         "params": {"optimizer": "adam"}, "description": "resnet"}))
    _log_cut_trial(tmp_path, tail)
    (trial,) = log.trials
    assert trial.status == "stopped" and trial.score is None and trial.params == {"optimizer": "adam"}
    assert 3 < trial.fit_seconds < 60


def test_nothing_finished_means_no_candidates(tmp_path):
    engine = AutoKerasEngine()
    none = np.zeros((0, 64, 96, 1), dtype=np.float32), np.zeros(0, dtype=int)
    assert engine._candidates(tmp_path / "best.pkl", engine._tensors(), ["a", "b"], [], *none) == []


# --- slow: real AutoKeras -----------------------------------------------------------------

@pytest.mark.slow
def test_search_returns_a_candidate_within_its_slice(sixty_second_search):
    data, candidates, trials, elapsed = sixty_second_search
    assert elapsed <= 60.0 + GRACE
    ok = [t for t in trials if t.status == "ok"]
    assert ok and all(t.score is not None and t.extra["epochs"] for t in ok)
    assert all(t.status in ("ok", "stopped") for t in trials)
    (candidate,) = candidates
    assert candidate.engine == "autokeras" and candidate.run_id in {f"run-{t.number}" for t in ok}
    proba = candidate.model.predict_proba(data.paths[:3])
    assert proba.shape == (3, len(data.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # The reported score is the model's own on the validation pages (same split, same metric).
    y = np.array([data.classes.index(label) for label in data.y])
    _, val = validation_split(y, 0.2, data.seed)
    val_proba = candidate.model.predict_proba([data.paths[i] for i in val])
    assert evaluate(data.y[val], val_proba, data.classes).score("macro_f1") == pytest.approx(candidate.validation_score)
    # Those validation pages are what the search calibrates the network on.
    np.testing.assert_array_equal(candidate.calibration.y, y[val])
    np.testing.assert_allclose(candidate.calibration.proba, val_proba, atol=1e-5)


@pytest.mark.slow
def test_a_slice_too_short_for_a_trial_stops_cleanly(pages, tmp_path):
    data = _training_data(pages, tmp_path)
    engine = AutoKerasEngine(size=SIZE, view="page", max_trials=5, epochs=50)  # far more than 25 s holds
    candidates, trials, elapsed = _search(data, 25.0, engine)
    assert elapsed <= 25.0 + GRACE
    # The slice ended the search, and the engine says so: a trial it cut is "stopped"; after a
    # trial that finished, it may instead have declined to start one that would not fit; on a
    # slow machine the set-up may have used the whole slice ("starved", one "stopped" line).
    report = engine.report
    assert report.ended in ("slice", "starved") and report.seconds <= 25.0 + GRACE
    assert trials and all(t.status in ("ok", "stopped") for t in trials)
    assert report.ended == "slice" or [t.status for t in trials] == ["stopped"]
    assert report.trials == sum(1 for t in trials if t.extra.get("trial_id"))
    assert bool(candidates) == any(t.status == "ok" for t in trials)  # only finished trials are offered


@pytest.mark.slow
def test_candidate_pickles_and_predicts_in_a_fresh_process(sixty_second_search, tmp_path):
    data, candidates, _, _ = sixty_second_search
    model = candidates[0].model
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    code = ("import json, pickle, sys; model = pickle.load(open(sys.argv[1], 'rb')); "
            "print(json.dumps(model.predict_proba(sys.argv[2:]).tolist()))")
    done = subprocess.run([sys.executable, "-c", code, str(path), *data.paths[:3]], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(fresh, model.predict_proba(data.paths[:3]), atol=1e-5)


@pytest.mark.slow
def test_gradcam_explains_an_autokeras_network(sixty_second_search):
    """AutoKeras builds its networks with lists of one input and one output; Grad-CAM must see through them."""
    from automl.explain import explain
    from automl.gradcam import gradcam, last_spatial_layer

    data, candidates, _, _ = sixty_second_search
    model = candidates[0].model
    network = model.classifier.network
    x = model.features.transform(data.paths[:1])  # the tensor the network reads for this page
    found = explain(model, data.paths[0], method="gradcam")
    # AutoKeras's small CNN has its convolutions at the top level; its ResNet/Xception nest them.
    expected = "gradcam" if last_spatial_layer(network) is not None else "saliency"
    assert found.detail["gradcam_method"] == expected, [layer.name for layer in network.layers]
    assert sum(found.lead_shares.values()) == pytest.approx(1.0)
    assert np.isfinite(found.heat).all() and found.heat.max() == pytest.approx(1.0)
    attribution = gradcam(network, x, model.classes.index(found.class_name))
    assert attribution.method == expected
    assert attribution.heat.shape == x.shape[1:-1]
    assert np.isfinite(attribution.heat).all() and (attribution.heat >= 0).all() and attribution.heat.max() > 0


@pytest.mark.slow  # the module's AutoKeras search, then an export run in its own process
def test_an_autokeras_network_exports_to_onnx_and_the_light_runtime_gives_its_probabilities(sixty_second_search,
                                                                                          tmp_path):
    from test_export import run_light

    from automl.export import export_model

    data, candidates, _, _ = sixty_second_search
    model = candidates[0].model
    pages = list(data.paths[:4])
    folder = export_model(model, tmp_path / "ak_export")
    rows, _ = run_light(folder, pages)
    checks, expected = model.predict_checked(pages)
    assert [row["status"] for row in rows] == [check.status for check in checks]
    got = np.array([list(row["probabilities"].values()) for row in rows], dtype=float)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)

