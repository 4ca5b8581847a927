"""trials.jsonl: whole lines only, each logged once, in order."""
from __future__ import annotations

import contextlib
import sqlite3
import threading

import pytest

from automl.engines.trialfile import TrialTail, append_line


def test_tail_logs_whole_lines_once(tmp_path):
    path = tmp_path / "trials.jsonl"
    logged = []
    tail = TrialTail(path, lambda trial: logged.append(trial) or f"run-{trial.number}", "autokeras")
    tail.poll()  # no file yet
    append_line(path, {"description": "a", "params": {"x": 1}, "score": 0.5, "seconds": 2.0, "status": "ok",
                       "extra": {"epochs": [{"epoch": 0}]}})
    with open(path, "ab") as fh:
        fh.write(b'{"description": "b", "status": "fa')  # a line still being written
    tail.poll()
    assert [t.description for t in logged] == ["a"] and logged[0].extra == {"epochs": [{"epoch": 0}]}
    with open(path, "ab") as fh:
        fh.write(b'iled", "error": "boom"}\n')
    tail.poll()
    tail.poll()
    assert [(t.number, t.status, t.error) for t in logged] == [(0, "ok", ""), (1, "failed", "boom")]
    assert [r["run_id"] for r in tail.records] == ["run-0", "run-1"]


def _trial_line(path, description):
    append_line(path, {"description": description, "params": {}, "score": 0.5, "seconds": 1.0, "status": "ok"})


def test_a_trial_whose_logging_failed_is_logged_at_the_next_look(tmp_path):
    from automl.tracking import SearchTracker

    tracker = SearchTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "hiccup")
    tracker.start_search("search", {}, {})
    path = tmp_path / "trials.jsonl"
    tail = TrialTail(path, lambda trial: tracker.log_trial(trial, "f1_macro"), "optuna")
    _trial_line(path, "first")
    _trial_line(path, "second")
    # The store refuses a run for a while (here: its experiment was deleted meanwhile).
    tracker.client.delete_experiment(tracker.experiment_id)
    with pytest.raises(Exception, match="active"):
        tail.poll()
    tracker.client.restore_experiment(tracker.experiment_id)
    tail.poll()
    assert [r["description"] for r in tail.records] == ["first", "second"]
    runs = tracker.client.search_runs([tracker.experiment_id], "tags.`smartecg.kind` = 'trial'")
    assert sorted(r.info.run_name for r in runs) == ["optuna-0000", "optuna-0001"]


def test_a_locked_store_is_waited_for_instead_of_losing_the_trial(tmp_path):
    db = tmp_path / "store.db"
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE trials (number INTEGER, description TEXT)")

    def log_to_store(trial):
        # No busy timeout of its own: a held lock fails at once with "database is locked".
        with contextlib.closing(sqlite3.connect(db, timeout=0)) as conn, conn:
            conn.execute("INSERT INTO trials VALUES (?, ?)", (trial.number, trial.description))
        return f"run-{trial.number}"

    path = tmp_path / "trials.jsonl"
    _trial_line(path, "while locked")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for a moment
    release = threading.Timer(0.3, holder.execute, ["COMMIT"])
    release.start()
    try:
        TrialTail(path, log_to_store, "optuna").poll()
    finally:
        release.join()
        holder.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT number, description FROM trials").fetchall() == [(0, "while locked")]
