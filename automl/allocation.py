"""Engines in turn under one budget, with no second of it silently lost.

Slices are planned with what each engine needs before its first trial can end (its worker's
start-up as last measured on this machine, plus one trial: :mod:`automl.startup_times`), so a
deep engine is not handed a slice that TensorFlow's import alone uses up. After the planned
turns, time the engines left unused goes back to an engine that can use it: one that got no trial
(starved) first, then one the slice's end stopped whose search resumes (a persistent Optuna
study). Whatever no engine can use is said, with each engine's reason, on the search run and in
its summary.

Engines that trail give way: once an engine has used ``ADAPT_AFTER`` of its slice, if its best
trial so far scores more than ``ADAPT_MARGIN`` below the best trial of the engines before it, it
is stopped (keeping what it found) and the rest of its slice flows to the engines after it, as in
successive halving across engines. The decision and the scores behind it are said and logged.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from automl.budget import Budget, format_duration
from automl.engines.base import Candidate, EngineReport
from automl.startup_times import StartupTimes

__all__ = ["EngineTurns", "MIN_ENGINE_SECONDS", "run_engines"]

log = logging.getLogger(__name__)

MIN_ENGINE_SECONDS = 5.0  # less than this and an engine cannot evaluate anything useful
_MAX_EXTRA_CALLS = 3  # per engine: each call pays its worker's start-up again
ADAPT_AFTER = 0.3  # share of its slice an engine gets before it is judged against the others
ADAPT_MARGIN = 0.10  # how far below the leader's best score (the spec's metric) counts as trailing


@dataclass
class EngineTurns:
    """What the engines did with the budget: every call's report, errors, and the unused seconds."""

    reports: list[EngineReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # engine -> why it never ran
    yielded: dict[str, dict] = field(default_factory=dict)  # engine -> the scores it was stopped on
    unused_seconds: float = 0.0
    unused_reason: str = ""

    def lines(self) -> list[str]:
        """One line per engine call, and one for the time no engine could use."""
        lines = [report.line() for report in self.reports]
        lines += [f"{name}: failed ({error.splitlines()[0]})" for name, error in self.errors.items()]
        lines += [f"{name}: not run ({why})" for name, why in self.skipped.items()]
        if self.unused_seconds >= MIN_ENGINE_SECONDS:
            lines.append(f"{self.unused_seconds:.0f} s of the engines' time went unused: {self.unused_reason}")
        return lines

    def metrics(self) -> dict[str, float]:
        metrics: dict[str, float] = {"unused_engine_seconds": self.unused_seconds}
        for report in self.reports:
            for key, value in (("calls", 1), ("seconds", report.seconds), ("trials", report.trials),
                               ("slice_seconds", report.slice_seconds)):
                name = f"engine_{report.engine}_{key}"
                metrics[name] = metrics.get(name, 0.0) + value
            if report.startup_seconds is not None:
                metrics[f"engine_{report.engine}_startup_seconds"] = report.startup_seconds
        for engine in {r.engine for r in self.reports}:  # busy share over all its calls, time-weighted
            timed = [r for r in self.reports if r.engine == engine and r.core_share is not None and r.seconds > 0]
            if timed:
                metrics[f"engine_{engine}_core_share"] = (sum(r.core_share * r.seconds for r in timed)
                                                          / sum(r.seconds for r in timed))
        return metrics

    def document(self) -> dict:
        return {"calls": [vars(report) for report in self.reports], "errors": self.errors, "skipped": self.skipped,
                "yielded": self.yielded, "unused_seconds": self.unused_seconds, "unused_reason": self.unused_reason}


def run_engines(spec, budget: Budget, training, log_trial, shown, *, engine_factory: Callable,
                startup_times: StartupTimes | None = None, core_use=None) -> tuple[list[Candidate], EngineTurns]:
    """Run the spec's engines in order, then give back what they left; returns every engine's
    latest candidates and what happened. One engine's failure never costs the others' results.
    ``core_use``: a running :class:`automl.core_use.CoreUse`; each call's report then says how
    busy the cores were during it."""
    startup_times = startup_times or StartupTimes()
    turns = EngineTurns()
    engines: dict[str, object] = {}
    for engine_spec in spec.engines:
        if engine_spec.weight <= 0:
            continue
        try:
            engines[engine_spec.name] = engine_factory(engine_spec)
        except Exception as exc:
            _failed(turns, shown, engine_spec.name, exc)
    weights = {e.name: e.weight for e in spec.engines if e.name in engines}

    def minimum(name: str) -> float:
        engine = engines[name]
        startup = startup_times.estimate(name, getattr(engine, "startup_estimate", 0.0))
        return startup + getattr(engine, "min_trial_seconds", MIN_ENGINE_SECONDS)

    candidates: dict[str, list[Candidate]] = {}
    last: dict[str, EngineReport | None] = {}
    best: dict[str, float] = {}  # engine -> its best trial score so far

    def scored_trial(trial):
        if trial.score is not None and trial.score == trial.score:
            best[trial.engine] = max(best.get(trial.engine, -1.0), float(trial.score))
        return log_trial(trial)

    def call(name: str, seconds: float) -> None:
        shown.set_stage(name, shown_as=f"{name} ({format_duration(seconds)})")
        engine, started, clock_started = engines[name], budget.elapsed(), time.monotonic()
        judge = _Trailing(name, seconds, budget, best)
        if training is not None:
            training.should_stop = judge
        try:
            candidates[name] = list(engine.search(training, seconds, scored_trial))
        except Exception as exc:
            _failed(turns, shown, name, exc)
            last[name] = None
            return
        finally:
            budget.engine_seconds += budget.elapsed() - started
        report = getattr(engine, "report", None) or EngineReport(name, seconds, budget.elapsed() - started,
                                                                  0, "finished", "no report from the engine")
        startup_times.record(name, report.startup_seconds)
        if core_use is not None:
            share = core_use.share(clock_started, time.monotonic())
            report.core_share = share if share == share else None  # NaN: the call was shorter than a sample
        if judge.decision is not None:
            report.ended, report.reason = "yielded", judge.decision["said"]
            turns.yielded[name] = judge.decision
            shown.message(f"{name}: {judge.decision['said']}")
        turns.reports.append(report)
        last[name] = report
        if report.ended == "starved":
            shown.message(f"{name}: {report.reason or 'no trial fitted in its slice'}")

    plan = budget.plan(weights, {name: minimum(name) for name in weights})
    order = list(plan)
    for position, name in enumerate(order):
        seconds = plan.slice(name)
        needed = max(MIN_ENGINE_SECONDS, minimum(name))
        # Too short for a trial: skipped when another engine can have the time, else tried anyway
        # (the estimate is the slowest start-up seen; the engine says so if it gets no trial).
        others = order[position + 1:] or _wanting_more(engines, last, dict.fromkeys(engines, 0))
        if seconds < needed and (others or seconds < MIN_ENGINE_SECONDS):
            why = (f"{seconds:.0f} s left of the budget, it needs about {needed:.0f} s "
                   "(its start-up and one trial)")
            shown.message(f"{name}: skipped for now, {why}")
            last[name] = EngineReport(name, seconds, 0.0, 0, "starved", why)
            continue
        call(name, seconds)

    extra_calls = dict.fromkeys(engines, 0)
    while True:
        available = budget.available()
        wanting = _wanting_more(engines, last, extra_calls)
        usable = [name for name in wanting if available >= max(MIN_ENGINE_SECONDS, minimum(name))]
        if not usable:
            break
        name = usable[0]
        extra_calls[name] += 1
        why = "it got no trial" if last[name].ended == "starved" else "its study goes on where it stopped"
        shown.message(f"{name}: gets the {available:.0f} s the engines left unused ({why})")
        call(name, available)
    turns.skipped = {name: report.reason for name, report in last.items()
                     if report is not None and report.ended == "starved" and not any(
                         r.engine == name for r in turns.reports)}
    turns.unused_seconds = budget.available()
    if turns.unused_seconds >= MIN_ENGINE_SECONDS:
        turns.unused_reason = _why_unused(engines, last, extra_calls, turns.unused_seconds, minimum)
        shown.message(f"{turns.unused_seconds:.0f} s of the engines' time went unused: {turns.unused_reason}")
    return [c for name in engines for c in candidates.get(name, [])], turns


class _Trailing:
    """Asked by the engine's runner while it works: stop now, since it trails the leader?"""

    def __init__(self, name: str, seconds: float, budget: Budget, best: dict[str, float]) -> None:
        self.name, self.seconds, self.budget, self.best = name, seconds, budget, best
        self.started = budget.elapsed()
        self.decision: dict | None = None

    def __call__(self) -> bool:
        if self.decision is not None:
            return True
        used = self.budget.elapsed() - self.started
        mine = self.best.get(self.name)
        others = {k: v for k, v in self.best.items() if k != self.name}
        if used < ADAPT_AFTER * self.seconds or mine is None or not others:
            return False
        leader = max(others, key=others.get)
        if mine >= others[leader] - ADAPT_MARGIN:
            return False
        self.decision = {
            "engine_best": mine, "leader": leader, "leader_best": others[leader], "margin": ADAPT_MARGIN,
            "after_seconds": used, "slice_seconds": self.seconds, "given_away_seconds": self.seconds - used,
            "said": (f"best {mine:.3f} trails {leader}'s {others[leader]:.3f} by more than {ADAPT_MARGIN:.2f} after "
                     f"{used:.0f} s of its {self.seconds:.0f} s slice: stopped, the rest goes to the others"),
        }
        return True


def _wanting_more(engines: dict, last: dict, extra_calls: dict) -> list[str]:
    """Engines more time would help, those with no trial yet first."""
    starved = [n for n in engines if last.get(n) is not None and last[n].ended == "starved"]
    resumable = [n for n in engines if last.get(n) is not None and last[n].ended == "slice"
                 and getattr(engines[n], "resumable", False)]
    return [n for n in starved + resumable if extra_calls[n] < _MAX_EXTRA_CALLS]


def _why_unused(engines: dict, last: dict, extra_calls: dict, seconds: float, minimum) -> str:
    reasons = []
    for name in engines:
        report = last.get(name)
        if report is None:
            reasons.append(f"{name} failed")
        elif report.ended == "yielded":
            reasons.append(f"{name} gave way (its scores trailed)")
        elif report.ended == "finished":
            reasons.append(f"{name} ended by itself ({report.reason or 'its search was done'})")
        elif report.ended == "slice" and not getattr(engines[name], "resumable", False):
            reasons.append(f"{name} would start its search over")
        elif extra_calls[name] >= _MAX_EXTRA_CALLS:
            reasons.append(f"{name} had {_MAX_EXTRA_CALLS} extra turns already")
        else:
            reasons.append(f"{name} needs about {minimum(name):.0f} s (start-up and a trial)")
    return "; ".join(reasons) if reasons else "no engine ran"


def _failed(turns: EngineTurns, shown, name: str, exc: Exception) -> None:
    log.debug("engine %s failed", name, exc_info=True)
    first = str(exc).splitlines()[0] if str(exc) else ""
    turns.errors[name] = f"{type(exc).__name__}: {exc}"[:5000]
    shown.message(f"{name}: failed ({type(exc).__name__}: {first}); going on with what the other engines found")
