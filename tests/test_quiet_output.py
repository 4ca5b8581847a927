"""`smartecg` commands print their own lines only: library noise goes to the log file (issue 24).

synth, a search with a deep engine (TensorFlow in the search and in its worker) and predict on
its champion, as real subprocesses with stdout and stderr piped, as in CI logs and cron.
"""
from __future__ import annotations

import json
import re

import pytest
from cli_helpers import smartecg

pytestmark = pytest.mark.slow

# TensorFlow/absl C++ lines, tf.function retracing, Python warnings, MLflow's download bars.
NOISE = re.compile(r"oneDNN|cuda|TF-TRT|I0000 00:00|W0000|E0000|absl::InitializeLog|computation placer"
                   r"|triggered tf\.function retracing|Downloading artifacts|\w+Warning: ", re.IGNORECASE)


def noise_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if NOISE.search(line)]


def test_synth_search_and_predict_print_no_library_noise_and_the_noise_is_in_the_log(tmp_path):
    cache, uri = tmp_path / "cache", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {"SMARTECG_CACHE": str(cache), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    spec = tmp_path / "deep.yaml"
    spec.write_text(json.dumps({  # YAML is a superset of JSON; the smallest Optuna search the tests run
        "name": "smartecg-quiet-test", "registry_name": "quiettest", "metric": "macro_f1", "features": ["signals"],
        "reserve_seconds": 15, "explain": {"pages_per_class": 0},
        "engines": {"optuna": {"weight": 1, "families": ["conv1d"], "signal_lengths": [128], "min_epochs": 1,
                               "max_epochs": 1, "max_trials": 1, "candidates": 1}},
    }))
    runs = {"synth": smartecg("data", "synth", tmp_path / "data", "--per-class", 6, "--seed", 5, env=env, cwd=tmp_path)}
    runs["search"] = smartecg("search", "--data", tmp_path / "data", "--budget", "90s", "--experiment", spec,
                              env=env, cwd=tmp_path, timeout=240)
    page = sorted((tmp_path / "data" / "MI").glob("*.jpg"))[0]
    runs["predict"] = smartecg("predict", page, "--model", "models:/quiettest@champion", env=env, cwd=tmp_path)

    for name, run in runs.items():
        assert noise_in(run.stdout) == [] and noise_in(run.stderr) == [], (name, run.stdout, run.stderr)
        assert "\r" not in run.stdout + run.stderr, name  # piped: plain lines, no rewriting in place
    search = runs["search"]
    # The progress line (every 15 s off a terminal) and the summary are there, readable.
    assert re.search(r"^search \d+s / 1m30s \| .+ \| \d+ trials", search.stderr, re.MULTILINE), search.stderr
    assert "search finished in" in search.stdout and "quiettest v1 is now 'champion'" in search.stdout, search.stdout
    assert runs["predict"].stdout.startswith(f"{page}: ")
    # ...and the noise went to the log file the summary names, the worker's output with it.
    (said,) = re.findall(r"^library messages .*: (\S+) \(also the run's logs/library\.log\)$", search.stdout,
                         re.MULTILINE)
    search_log = (cache / "logs" / said.rsplit("/", 1)[-1])
    assert str(search_log) == said
    text = search_log.read_text()
    assert "----- automl.engines.optuna_worker (exit 0)" in text and noise_in(text), text[:2000]
    (predict_log,) = (cache / "logs").glob("predict-*.log")
    assert noise_in(predict_log.read_text()), predict_log.read_text()[:2000]  # TensorFlow's, loading the network
    assert list((cache / "logs").glob("data-synth-*.log")) == []  # nothing to say: no file left behind
