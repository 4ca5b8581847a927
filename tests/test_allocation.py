"""Engines in turn under one budget: start-up planned for, unused time given back or said.

The planning logic is about time, not TensorFlow, so most tests here run scripted engines on a
fake clock: they are deterministic however busy the machine is. The last test runs the real
Optuna worker in a slice too short for a trial after its start-up.
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from automl.allocation import run_engines
from automl.budget import Budget
from automl.engines.base import EngineReport
from automl.startup_times import StartupTimes


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedEngine:
    """An engine whose worker takes ``startup`` seconds to start; then it trains until its slice
    ends (``uses=None``) or for ``uses`` seconds, one trial per ``trial_seconds``."""

    def __init__(self, name, clock, *, startup, uses=None, trial_seconds=8.0, resumable=False, estimate=5.0):
        self.name, self.clock, self.startup, self.uses = name, clock, startup, uses
        self.trial_seconds, self.resumable, self.startup_estimate = trial_seconds, resumable, estimate
        self.min_trial_seconds = trial_seconds
        self.calls: list[float] = []
        self.report = None

    def search(self, data, seconds, log_trial):
        self.calls.append(seconds)
        if self.startup + self.trial_seconds > seconds:  # the worker starts, finds too little left, exits
            self.clock.now += min(self.startup, seconds)
            self.report = EngineReport(self.name, seconds, min(self.startup, seconds), 0, "starved",
                                       f"no trial: start-up took {self.startup:.0f} s", self.startup)
            return []
        used = seconds if self.uses is None else min(self.uses, seconds)
        self.clock.now += used
        trials = int((used - self.startup) // self.trial_seconds)
        self.report = EngineReport(self.name, seconds, used, trials, "slice" if self.uses is None else "finished",
                                   startup_seconds=self.startup)
        return [f"{self.name}-candidate-{len(self.calls)}"]


class Shown:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def set_stage(self, stage, shown_as=None) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)


def _spec(*names_weights):
    engines = [SimpleNamespace(name=name, weight=weight) for name, weight in names_weights]
    return SimpleNamespace(engines=engines)


def _run(spec, budget, engines, tmp_path, startup_times=None):
    shown = Shown()
    candidates, turns = run_engines(spec, budget, None, None, shown, engine_factory=lambda e: engines[e.name],
                                    startup_times=startup_times or StartupTimes(tmp_path / "startup.json"))
    return candidates, turns, shown


def test_a_starved_last_engine_is_reported_and_its_time_goes_to_a_resumable_engine(tmp_path):
    clock = FakeClock()
    budget = Budget(200, reserve=0, clock=clock)
    optuna = ScriptedEngine("optuna", clock, startup=10, resumable=True)
    autokeras = ScriptedEngine("autokeras", clock, startup=60, trial_seconds=45)  # its estimate was 5 s
    candidates, turns, shown = _run(_spec(("optuna", 1), ("autokeras", 1)), budget,
                                    {"optuna": optuna, "autokeras": autokeras}, tmp_path)
    assert optuna.calls[0] == pytest.approx(100) and autokeras.calls == [pytest.approx(100)]
    # AutoKeras found 40 s after its 60 s start-up, less than its 45 s trial; those 40 s go back
    # to Optuna, whose study resumes (AutoKeras would need 105 s now that its start-up is known).
    assert optuna.calls[1:] == [pytest.approx(40)]
    assert any("autokeras: no trial: start-up took 60 s" in m for m in shown.messages)
    assert any("optuna: gets the 40 s the engines left unused" in m for m in shown.messages)
    assert budget.remaining() == pytest.approx(0) and turns.unused_seconds == pytest.approx(0)
    assert candidates == ["optuna-candidate-2"]  # a resumable engine's later call returns the best of all
    assert [r.engine for r in turns.reports] == ["optuna", "autokeras", "optuna"]
    assert turns.metrics()["engine_optuna_calls"] == 2 and turns.metrics()["engine_autokeras_trials"] == 0


def test_a_starved_engine_gets_another_turn_when_an_engine_after_it_finishes_early(tmp_path):
    clock = FakeClock()
    budget = Budget(200, reserve=0, clock=clock)
    deep = ScriptedEngine("optuna", clock, startup=95, trial_seconds=8)  # 100 s slice, 5 s left after start-up
    tpot = ScriptedEngine("tpot", clock, startup=1, uses=2)  # ends by itself after 2 s of its 105
    candidates, turns, shown = _run(_spec(("optuna", 1), ("tpot", 1)), budget, {"optuna": deep, "tpot": tpot},
                                    tmp_path)
    assert deep.calls == [pytest.approx(100), pytest.approx(103)] and tpot.calls == [pytest.approx(105)]
    assert [r.ended for r in turns.reports] == ["starved", "finished", "slice"]
    assert any("optuna: gets the 103 s the engines left unused (it got no trial)" in m for m in shown.messages)
    assert sorted(candidates) == ["optuna-candidate-2", "tpot-candidate-1"] and turns.unused_seconds == 0


def test_time_no_engine_can_use_is_said_with_each_engines_reason(tmp_path):
    clock = FakeClock()
    budget = Budget(120, reserve=10, clock=clock)
    deep = ScriptedEngine("optuna", clock, startup=50, trial_seconds=10)  # 55 s slice: 5 s left after start-up
    tpot = ScriptedEngine("tpot", clock, startup=2, uses=20)  # ends by itself after 20 s
    _, turns, shown = _run(_spec(("optuna", 1), ("tpot", 1)), budget, {"optuna": deep, "tpot": tpot}, tmp_path)
    assert deep.calls == [pytest.approx(55)] and tpot.calls == [pytest.approx(60)]
    # 110 - 50 - 20 = 40 s are left; Optuna's start-up is now known to be 50 s, so it cannot use
    # them: they are said, with the reason, on the run and in the summary lines, not dropped.
    assert turns.unused_seconds == pytest.approx(40)
    assert turns.unused_reason == ("optuna needs about 60 s (start-up and a trial); "
                                   "tpot ended by itself (its search was done)")
    assert "40 s of the engines' time went unused: optuna needs about 60 s" in shown.messages[-1]
    assert turns.lines()[-1].startswith("40 s of the engines' time went unused")
    assert turns.metrics()["unused_engine_seconds"] == pytest.approx(40)


def test_a_measured_slow_start_up_is_planned_for_before_the_slices_are_cut(tmp_path):
    times = StartupTimes(tmp_path / "startup.json")
    times.record("optuna", 35.0)  # a slow machine, measured by an earlier search
    clock = FakeClock()
    budget = Budget(100, reserve=0, clock=clock)
    tpot = ScriptedEngine("tpot", clock, startup=2)
    deep = ScriptedEngine("optuna", clock, startup=35, trial_seconds=8, estimate=5.0)
    _, turns, shown = _run(_spec(("tpot", 3), ("optuna", 1)), budget, {"tpot": tpot, "optuna": deep}, tmp_path,
                           startup_times=times)
    # By weight TPOT would get 75 s and Optuna 25 s, less than its 35 s start-up and an 8 s trial.
    assert tpot.calls == [pytest.approx(57)] and deep.calls == [pytest.approx(43)]
    assert deep.report.ended == "slice" and deep.report.trials == 1
    assert not shown.messages


def test_an_engine_too_short_for_a_trial_is_skipped_when_another_can_use_the_time(tmp_path):
    times = StartupTimes(tmp_path / "startup.json")
    times.record("optuna", 90.0)
    clock = FakeClock()
    budget = Budget(60, reserve=0, clock=clock)
    deep = ScriptedEngine("optuna", clock, startup=90)
    tpot = ScriptedEngine("tpot", clock, startup=2)
    _, turns, shown = _run(_spec(("optuna", 1), ("tpot", 1)), budget, {"optuna": deep, "tpot": tpot}, tmp_path,
                           startup_times=times)
    assert deep.calls == [] and tpot.calls == [pytest.approx(60)]
    assert any("optuna: skipped for now, 60 s left of the budget, it needs about 98 s" in m for m in shown.messages)
    assert turns.skipped == {"optuna": "60 s left of the budget, it needs about 98 s (its start-up and one trial)"}
    assert "optuna: not run (60 s left" in "\n".join(turns.lines())


def test_start_up_times_keep_the_slowest_recent_and_survive_a_damaged_file(tmp_path):
    path = tmp_path / "engines" / "startup.json"
    times = StartupTimes(path)
    assert times.estimate("optuna", 12.0) == 12.0
    for seconds in (9.0, 14.5, 8.0, None, 10.0, 11.0, 7.0, 7.5):
        times.record("optuna", seconds)
    assert times.estimate("optuna", 12.0) == 11.0  # the slowest of the last five (14.5 has aged out)
    path.write_text("{not json")
    assert StartupTimes(path).estimate("optuna", 12.0) == 12.0


@pytest.mark.slow
def test_the_real_optuna_worker_in_a_slice_too_short_after_start_up_says_so(tiny_synthetic, tmp_path):
    from automl.engines.base import TrainingData
    from automl.engines.optuna_engine import MIN_TRIAL_SECONDS, OptunaEngine

    paths = sorted(str(p) for p in Path(tiny_synthetic).rglob("*.jpg"))
    labels = np.array([Path(p).parent.name for p in paths], dtype=object)
    data = TrainingData(paths=paths, X=np.zeros((len(paths), 1)), y=labels, classes=sorted(set(labels)),
                        features=None, metric="macro_f1", seed=0, workdir=tmp_path)
    engine = OptunaEngine(families=("conv1d",), signal_lengths=(128,), min_epochs=1, max_epochs=1,
                          storage=f"sqlite:///{tmp_path / 'optuna.db'}", study="short")
    logged = []
    started = time.monotonic()
    seconds = MIN_TRIAL_SECONDS - 1.0  # shorter than a trial whatever the start-up
    assert engine.search(data, seconds, logged.append) == []
    assert time.monotonic() - started < seconds + 5.0
    report = engine.report
    assert not logged and report.ended == "starved" and report.trials == 0
    assert report.reason.startswith("no trial: the worker")


class TrailingEngine(ScriptedEngine):
    """A worker that logs a trial of ``score`` every ``every`` seconds and asks the search after
    each second whether to stop, as the runner does for real workers."""

    def __init__(self, name, clock, *, score, every=5.0):
        super().__init__(name, clock, startup=0.0)
        self.score, self.every = score, every

    def search(self, data, seconds, log_trial):
        from automl.engines.base import Trial

        self.calls.append(seconds)
        used, trials = 0.0, 0
        while used < seconds:
            self.clock.now += 1.0
            used += 1.0
            if used % self.every == 0:
                log_trial(Trial(self.name, trials, "x", {}, self.score, self.every, "ok"))
                trials += 1
            if data.should_stop is not None and data.should_stop():
                break
        self.report = EngineReport(self.name, seconds, used, trials, "slice")
        return [f"{self.name}-candidate"]


def test_an_engine_that_trails_the_leader_gives_most_of_its_slice_to_the_others(tmp_path):
    clock = FakeClock()
    budget = Budget(200, reserve=0, clock=clock)
    leader = TrailingEngine("portfolio", clock, score=0.80, every=2.0)
    useless = TrailingEngine("optuna", clock, score=0.25)
    after = TrailingEngine("tpot", clock, score=0.78)
    training = SimpleNamespace(should_stop=None)
    shown = Shown()
    _, turns = run_engines(_spec(("portfolio", 0.1), ("optuna", 2), ("tpot", 1)), budget, training,
                           lambda trial: None, shown,
                           engine_factory=lambda e: {"portfolio": leader, "optuna": useless, "tpot": after}[e.name],
                           startup_times=StartupTimes(tmp_path / "startup.json"))
    assert leader.calls == [pytest.approx(13)]  # its minimum (5 s start-up estimate and an 8 s trial)
    optuna_slice = useless.calls[0]
    # Judged after 30% of its slice: 0.25 trails 0.80 by more than 0.10, so it stops there...
    report = next(r for r in turns.reports if r.engine == "optuna")
    assert report.ended == "yielded" and report.seconds == pytest.approx(0.3 * optuna_slice, abs=1.0)
    # ...and TPOT, after it, gets its own share plus what Optuna gave away.
    assert after.calls[0] == pytest.approx(200 - leader.calls[0] - report.seconds)
    decision = turns.yielded["optuna"]
    assert decision["leader"] == "portfolio" and decision["leader_best"] == 0.80 and decision["engine_best"] == 0.25
    assert any(m.startswith("optuna: best 0.250 trails portfolio's 0.800 by more than 0.10") for m in shown.messages)
    assert turns.document()["yielded"]["optuna"]["given_away_seconds"] > 0.6 * optuna_slice
    # A yielded engine gets none of the time left at the end (there is none here, but it is not asked).
    assert len(useless.calls) == 1


def test_an_engine_close_to_the_leader_keeps_its_slice(tmp_path):
    clock = FakeClock()
    budget = Budget(100, reserve=0, clock=clock)
    leader = TrailingEngine("portfolio", clock, score=0.80, every=1.0)
    close = TrailingEngine("tpot", clock, score=0.72)
    training = SimpleNamespace(should_stop=None)
    _, turns = run_engines(_spec(("portfolio", 1), ("tpot", 1)), budget, training, lambda trial: None, Shown(),
                           engine_factory=lambda e: {"portfolio": leader, "tpot": close}[e.name],
                           startup_times=StartupTimes(tmp_path / "startup.json"))
    assert [r.ended for r in turns.reports] == ["slice", "slice"] and not turns.yielded
    assert close.report.seconds == pytest.approx(50)


class TimedEngine:
    """Real time, real CPU: waits idle (``busy=False``) or has a worker process compute on one core
    for ``seconds``, as engines do (a loop in this process would hold the GIL the sampler needs)."""

    def __init__(self, name, seconds, busy):
        self.name, self.seconds, self.busy, self.report = name, seconds, busy, None

    def search(self, data, seconds, log_trial):
        import subprocess
        import sys

        if self.busy:
            spin = f"import time\nend = time.monotonic() + {self.seconds}\nwhile time.monotonic() < end:\n    pass"
            subprocess.run([sys.executable, "-c", spin], check=True)
        else:
            time.sleep(self.seconds)
        self.report = EngineReport(self.name, seconds, self.seconds, 1, "finished")
        return []


def test_each_engine_call_says_how_busy_the_cores_were(tmp_path):
    """Where a search leaves cores idle shows per engine (sampled from the OS, not modelled)."""
    from automl.core_use import CoreUse

    core_use = CoreUse(interval=0.2, cores=2).start()
    try:
        engines = {"idle": TimedEngine("idle", 2.5, busy=False), "busy": TimedEngine("busy", 2.5, busy=True)}
        _, turns = run_engines(_spec(("idle", 1), ("busy", 1)), Budget(60, reserve=0), None, None, Shown(),
                               engine_factory=lambda e: engines[e.name], core_use=core_use,
                               startup_times=StartupTimes(tmp_path / "startup.json"))
    finally:
        core_use.stop()
    idle, busy = turns.reports
    # One of two cores is about half; a third when other processes share the machine.
    assert idle.core_share < 0.1 < busy.core_share <= 0.6
    assert "cores" in busy.line() and f"{busy.core_share:.0%} busy" in busy.line()
    assert turns.metrics()["engine_busy_core_share"] == pytest.approx(busy.core_share)
