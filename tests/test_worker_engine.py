"""The routine the worker-based engines share (automl.engines.worker_engine), with a tiny real worker."""
import json
import textwrap
import time

import numpy as np
import pytest

from automl.engines.base import TrainingData
from automl.engines.worker_engine import WorkerEngine, wall_clock

# Appends the trials its job asks for, then exits with the job's code (a crash after them, or before any).
WORKER = textwrap.dedent("""
    import json, pathlib, sys
    from automl.engines.trialfile import append_line
    root = pathlib.Path(sys.argv[1])
    job = json.loads((root / "job.json").read_text())
    for score in job["scores"]:
        append_line(root / "trials.jsonl", {"description": "net", "params": {}, "score": score, "status": "ok"})
    print("worker says: out of luck")
    sys.exit(job["exit"])
""")


class LineEngine(WorkerEngine):
    name, label, worker_module = "lines", "Lines", "line_worker"

    def __init__(self, modules, fresh=False):
        super().__init__()
        self.modules, self.fresh_workdir, self.after = modules, fresh, []

    def search(self, data, seconds, log_trial, scores=(0.5,), exit_code=0):
        call = self._new_call(data, seconds)
        trials = self._trial_tail(call, log_trial)
        self._run_worker(call, {"scores": list(scores), "exit": exit_code}, trials, call.deadline,
                         env={"PYTHONPATH": str(self.modules)})
        return call, trials

    def _after_worker(self, call, run, trials):
        self.after.append((call.workdir, run.returncode, len(trials.records)))


@pytest.fixture()
def engine_and_data(tmp_path):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "line_worker.py").write_text(WORKER)
    data = TrainingData(paths=["a", "b"], X=np.zeros((2, 1)), y=np.array(["MI", "Normal"]), classes=["MI", "Normal"],
                        features=None, metric="f1_macro", seed=0, workdir=tmp_path / "search")
    return LineEngine(tmp_path / "mods"), data


def test_trials_are_logged_and_a_second_call_goes_on_numbering_in_its_own_folder(engine_and_data):
    engine, data = engine_and_data
    logged = []
    first, trials = engine.search(data, 30.0, lambda t: logged.append(t) or f"run-{t.number}", scores=(0.4, 0.6))
    assert first.workdir == data.workdir / "lines" and list(first.y) == [0, 1]
    assert [r["run_id"] for r in trials.records] == ["run-0", "run-1"]
    second, _ = engine.search(data, 30.0, logged.append, scores=(0.7,))
    assert second.workdir == data.workdir / "lines" / "call-2"
    assert [(t.engine, t.number, t.score) for t in logged] == [("lines", 0, 0.4), ("lines", 1, 0.6), ("lines", 2, 0.7)]
    assert engine.after == [(first.workdir, 0, 2), (second.workdir, 0, 1)]  # the hook saw every call


def test_a_worker_that_fails_before_any_trial_is_an_error_naming_the_engine(engine_and_data):
    engine, data = engine_and_data
    with pytest.raises(RuntimeError, match=r"Lines worker failed \(exit 3\)(.|\n)*out of luck"):
        engine.search(data, 30.0, lambda t: None, scores=(), exit_code=3)


def test_a_worker_that_fails_after_a_trial_keeps_it(engine_and_data):
    engine, data = engine_and_data
    logged = []
    _, trials = engine.search(data, 30.0, logged.append, scores=(0.8,), exit_code=3)
    assert [t.score for t in logged] == [0.8] and len(trials.records) == 1


def test_a_fresh_folder_does_not_replay_an_earlier_searchs_trials(engine_and_data):
    engine, data = engine_and_data
    stale = data.workdir / "lines" / "trials.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"description": "old", "score": 0.99, "status": "ok"}) + "\n")
    engine.fresh_workdir = True
    logged = []
    engine.search(data, 30.0, logged.append, scores=(0.3,))
    assert [t.score for t in logged] == [0.3]


def test_wall_clock_is_the_same_moment_on_time_time():
    assert wall_clock(time.monotonic() + 10.0) - time.time() == pytest.approx(10.0, abs=0.05)
