"""TPOT, Optuna and AutoKeras in one search: one budget, every trial logged, all candidates on one holdout."""
from __future__ import annotations

import json

import pytest
from cli_helpers import smartecg

from features.synthetic import LayoutMix, generate_dataset

pytestmark = pytest.mark.slow

ENGINES = ("tpot", "optuna", "autokeras")


def test_three_engines_share_a_budget_and_their_candidates_compete_on_the_holdout(tmp_path):
    data = generate_dataset(tmp_path / "data", 8, seed=41, layouts=LayoutMix(six_by_two=0.3), progress=False)
    spec = tmp_path / "three.yaml"
    spec.write_text(json.dumps({  # YAML is a superset of JSON
        "name": "smartecg-three-test", "registry_name": "threetest", "metric": "macro_f1", "features": ["signals"],
        "reserve_seconds": 15,
        "engines": {
            # TPOT uses its whole slice; the deep engines stop after their capped trials, so
            # weights towards them leave room for TensorFlow's start-up on a busy machine.
            "tpot": {"weight": 1, "population_size": 4, "cv": 2, "max_eval_seconds": 10, "candidates": 1},
            "optuna": {"weight": 2, "families": ["conv1d"], "signal_lengths": [128], "min_epochs": 2,
                       "max_epochs": 3, "max_trials": 2, "candidates": 1},
            "autokeras": {"weight": 3, "view": "leads", "size": [32, 48], "max_trials": 1, "epochs": 2},
        },
    }))
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {"SMARTECG_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": uri}
    budget = 180
    out = smartecg("search", "--data", data, "--budget", f"{budget}s", "--experiment", spec, "--quiet", env=env,
                   cwd=tmp_path, timeout=budget + 120).stdout
    assert "threetest v1 is now 'champion'" in out, out

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not use_store: it sets this process's env
    experiment = client.get_experiment_by_name("smartecg-three-test")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("smartecg.kind") == "search"]
    assert parent.data.metrics["elapsed_seconds"] <= budget + 10
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    by_engine = {name: [t for t in trials if t.data.tags.get("smartecg.engine") == name] for name in ENGINES}
    assert all(by_engine.values()), {name: len(ts) for name, ts in by_engine.items()}
    # Every engine's best network or pipeline was scored on the same holdout pages...
    scored = {name: [t for t in ts if "holdout_macro_f1" in t.data.metrics] for name, ts in by_engine.items()}
    assert all(scored.values()), {name: len(ts) for name, ts in scored.items()}
    sizes = {sum(v for k, v in t.data.metrics.items() if k.startswith("holdout_by_layout.") and k.endswith(".n"))
             for ts in scored.values() for t in ts}
    assert len(sizes) == 1 and sizes.pop() >= 5
    # ...and the registered champion is the best of them by the spec's metric, cross-validated on
    # the training pages (the holdout reports; it does not choose).
    best = max(t.data.metrics["cv_macro_f1"] for ts in scored.values() for t in ts)
    champion = client.get_model_version_by_alias("threetest", "champion")
    assert float(champion.tags["cv_macro_f1"]) == pytest.approx(best, abs=1e-5)
    assert parent.data.tags["smartecg.selected"].startswith(champion.tags["engine"])
    # Deep trials carry their per-epoch validation curves.
    deep = [t for t in by_engine["optuna"] if t.info.status == "FINISHED"]
    assert deep and client.get_metric_history(deep[0].info.run_id, "epoch_val_macro_f1")
