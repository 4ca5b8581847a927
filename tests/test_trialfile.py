"""trials.jsonl: whole lines only, each logged once, in order."""
from __future__ import annotations

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
