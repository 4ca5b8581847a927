"""The nightly re-search end to end: real searches, a real lock, the data growing between nights."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import smartecg, smartecg_command

from automl.schedule import read_env_file, write_env_file
from features.synthetic import generate_dataset

SPEC = {  # YAML is a superset of JSON
    "name": "smartecg-nightly-test", "registry_name": "nightlytest", "metric": "macro_f1", "features": ["signals"],
    # A budget with room for the slowest start-up of TensorFlow measured on 2 busy cores (~15 s)
    # and one trial after it: TPOT gets its minimum, Optuna stops itself after its one trial.
    "reserve_seconds": 8, "budget": "75s", "explain": {"pages_per_class": 0},
    "engines": {
        "tpot": {"weight": 1, "population_size": 6, "cv": 3, "max_eval_seconds": 10, "n_jobs": 1, "candidates": 1},
        "optuna": {"weight": 3, "families": ["conv1d"], "signal_lengths": [128], "min_epochs": 1, "max_epochs": 2,
                   "max_trials": 1, "candidates": 1},
    },
}


def holdout_of(data) -> set[str]:
    split = pd.read_csv(data / "smartecg_split.csv", comment="#")
    return set(split.loc[split["split"] == "holdout", "sha256"])


@pytest.mark.slow
def test_nights_are_locked_log_what_changed_resume_the_study_and_keep_the_holdout(tmp_path):
    data = generate_dataset(tmp_path / "data", 6, seed=41, progress=False)
    spec = tmp_path / "nightly-test.yaml"
    spec.write_text(json.dumps(SPEC))
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {"SMARTECG_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    args = ["nightly", "--data", data, "--experiment", spec, "--state-dir", tmp_path / "state"]

    first = smartecg(*args, env=env, cwd=tmp_path, timeout=240).stdout
    assert "first night" in first and "optuna study: 0 -> 1 trials" in first, first
    assert "nightlytest v1 is now 'champion'" in first
    holdout = holdout_of(data)

    # Five pages arrive during the day.
    extra = generate_dataset(tmp_path / "extra", 1, seed=42, progress=False)
    for page in extra.glob("*/*.jpg"):
        shutil.copy(page, data / page.parent.name / f"new-{page.name}")

    second = subprocess.Popen(smartecg_command() + [str(a) for a in args], env={**os.environ, **env}, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "state" / "nightly.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip()):
            assert time.monotonic() < deadline and second.poll() is None, "the second night never took the lock"
            time.sleep(0.2)
        started = time.monotonic()
        third = smartecg(*args, env=env, cwd=tmp_path, check=False)
        assert time.monotonic() - started < 20  # at once, without scanning or searching
        lines = [line for line in third.stderr.splitlines() if line.strip()]
        assert third.returncode == 75 and len(lines) == 1, third.stderr
        assert f"another nightly run is running (pid {second.pid} on " in lines[0]
        out, err = second.communicate(timeout=240)
    finally:
        second.kill()
    assert second.returncode == 0, err
    assert "35 images; 5 new, 0 removed, 0 changed since the last night" in out, out
    assert "optuna study: 1 -> 2 trials" in out
    assert holdout_of(data) == holdout  # the new pages went to training
    summary = (tmp_path / "state" / "last_summary.txt").read_text()
    assert "5 new" in summary and ("is now 'champion'" in summary or "is now 'challenger'" in summary)

    from automl.tracking import use_store

    client = use_store(uri)
    experiment = client.get_experiment_by_name("smartecg-nightly-test")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`smartecg.nightly` = 'true'",
                              order_by=["attributes.start_time ASC"])
    assert len(runs) == 2 and runs[1].data.tags["smartecg.previous_data_hash"] == runs[0].data.tags["smartecg.data_hash"]
    def artifact(name: str) -> str:
        return Path(client.download_artifacts(runs[1].info.run_id, name, str(tmp_path))).read_text()

    changes = json.loads(artifact("data_changes.json"))
    assert len(changes["new"]) == 5 and all(p.split("/")[1].startswith("new-") for p in changes["new"])
    assert "5 new" in artifact("nightly_summary.txt")


def test_the_env_file_is_the_owners_alone_and_gives_back_every_value(tmp_path):
    values = {"MLFLOW_TRACKING_URI": "postgresql://smartecg:it's $ecret%20@db/mlflow",
              "SMARTECG_CACHE": "/srv/cache with spaces", "PGPASSWORD": 'two\nlines "and" `ticks`'}
    umask = os.umask(0)  # the most open a user might have
    try:
        path = write_env_file(tmp_path / "nightly.env", values)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_env_file(path) == values


@pytest.mark.slow  # real processes end to end (a few seconds each)
def test_nightly_takes_its_stores_and_cache_from_the_env_file(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    env_file = write_env_file(tmp_path / "nightly.env", {
        "MLFLOW_TRACKING_URI": uri, "SMARTECG_CACHE": str(tmp_path / "cache"),
        "SMARTECG_OPTUNA_STORAGE": "postgresql://smartecg:s3cret@db.invalid/optuna"})
    missing = tmp_path / "pages"
    night = smartecg("nightly", "--data", missing, "--env-file", env_file, cwd=tmp_path, check=False,
                     env={"MLFLOW_TRACKING_URI": "", "SMARTECG_CACHE": ""})  # as cron starts it: neither set
    assert night.returncode == 2 and f"{missing}: no such folder" in night.stderr, night.stderr
    state = tmp_path / "cache" / "nightly" / "smartecg-nightly"
    assert night.stdout.splitlines() == [f"nightly run of smartecg-nightly: data {missing}, MLflow {uri}, "
                                         f"Optuna postgresql://smartecg:***@db.invalid/optuna, state {state}"]

    env_file.chmod(0o644)
    refused = smartecg("nightly", "--data", missing, "--env-file", env_file, cwd=tmp_path, check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [f"smartecg: error: {env_file} is open to other users (mode 0644) and may "
                                           f"hold passwords; run `chmod 600 {env_file}`"]
