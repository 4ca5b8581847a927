"""Optuna's storage as SmartECG opens it: a real SQLite study, a real write lock, trials cut off by a stop."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from automl.engines.optuna_engine import OptunaEngine
from automl.engines.optuna_storage import WORKER_ATTR, open_storage, worker_tag
from automl.engines.runner import WorkerRun
from automl.engines.trialfile import TrialTail
from automl.engines.worker_engine import EngineCall
from features.atomic import write_text


def test_a_trial_cut_at_the_slices_end_ends_failed_and_another_workers_trial_is_left_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    workdir = tmp_path / "optuna"
    workdir.mkdir()
    write_text(workdir / "job.json", f'{{"storage": "{url}", "study_name": "s"}}')
    done = study.ask()
    done.set_user_attr(WORKER_ATTR, worker_tag(workdir))
    study.tell(done, 0.5)
    cut = study.ask()  # what the worker had started when its process group was stopped
    cut.set_user_attr(WORKER_ATTR, worker_tag(workdir))
    elsewhere = study.ask()  # a worker of another search (or machine) sharing the study, still running
    elsewhere.set_user_attr(WORKER_ATTR, worker_tag(tmp_path / "other-search"))

    call = EngineCall(workdir, time.monotonic(), time.monotonic(), ["a", "b"], np.zeros(2, dtype=np.int64))
    stopped = WorkerRun(returncode=-15, stopped=True, seconds=1.0, log_path=workdir / "worker.log")
    OptunaEngine()._after_worker(call, stopped, TrialTail(workdir / "trials.jsonl", lambda t: "", "optuna"))

    stored = {t.number: t for t in optuna.load_study(study_name="s", storage=open_storage(url)).trials}
    assert stored[cut.number].state == optuna.trial.TrialState.FAIL
    assert stored[cut.number].user_attrs["fail_reason"] == "cut at the end of its slice"
    assert stored[done.number].state == optuna.trial.TrialState.COMPLETE
    assert stored[elsewhere.number].state == optuna.trial.TrialState.RUNNING


@pytest.mark.slow
def test_a_sqlite_study_waits_for_another_writer_longer_than_the_drivers_default(tmp_path: Path):
    db = tmp_path / "optuna.db"
    study = optuna.create_study(storage=open_storage(f"sqlite:///{db}"), study_name="s")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing
    release = threading.Timer(6.0, holder.execute, ["COMMIT"])  # past sqlite3's own 5 s wait
    release.start()
    try:
        trial = study.ask()
    finally:
        release.join()
        holder.close()
    study.tell(trial, 1.0)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
