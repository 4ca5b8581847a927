"""One deadline for a whole command, and the slices of it that engines get.

``smartecg search --budget 30m`` starts a :class:`Budget` before anything else (data scan
included). Engines are planned in order with weights; an engine's slice is its weight's share
of the time still left after a reserve for the final scoring and registration, so time an
engine does not use flows to the engines after it. Engines are stopped at the end of their
slice by whoever runs them (:mod:`automl.engines.runner`); this module only does the arithmetic.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

__all__ = ["Budget", "parse_duration", "format_duration"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"1.5h"``; a bare number or another unit is refused."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"cannot read {text!r} as a duration: use a number with s, m or h, e.g. 90s, 30m, 2h")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"the budget must be positive, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``"4m05s"``, ``"1h02m"``, ``"42s"``: short, for progress lines."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Budget:
    """A deadline ``seconds`` after creation, on a monotonic clock.

    ``reserve`` seconds at the end are kept back from engines for scoring, logging and
    registration; :meth:`engine_slice` never hands them out.
    """

    seconds: float
    reserve: float = 0.0
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=math.nan)
    # Seconds spent inside engine slices, for the overhead figure in the summary and bench.
    engine_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"budget must be positive, got {self.seconds}")
        if math.isnan(self.started):
            self.started = self.clock()

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def available(self) -> float:
        """Seconds engines may still have: what is left before the reserve."""
        return max(0.0, self.remaining() - self.reserve)

    def engine_slice(self, weight: float, weights_left: float) -> float:
        """Seconds for an engine of ``weight`` when engines of ``weights_left`` (its own
        included) still have to run: their share of what is left after the reserve."""
        if weight <= 0 or weights_left <= 0:
            return 0.0
        return self.available() * min(1.0, weight / weights_left)

    def plan(self, weights: Mapping[str, float], minimums: Mapping[str, float] | None = None) -> "SlicePlan":
        return SlicePlan(self, dict(weights), dict(minimums or {}))


class SlicePlan:
    """Hands out slices to engines in order; what one engine leaves unspent goes to the next.

    ``minimums``: the least an engine can use (its worker's start-up plus one trial). An engine
    gets at least its minimum when the budget has it, and no engine's share eats into the
    minimums of the engines after it (those that still fit), so a slow start-up is planned for
    rather than found out inside a slice too short to use.

    >>> plan = budget.plan({"tpot": 2, "optuna": 1}, {"optuna": 20})
    >>> for engine in plan:              # doctest: +SKIP
    ...     seconds = plan.slice(engine)  # 2/3 of what is left (20 s kept for optuna), then all of it
    """

    def __init__(self, budget: Budget, weights: dict[str, float], minimums: dict[str, float] | None = None) -> None:
        for name, weight in weights.items():
            if not weight >= 0:
                raise ValueError(f"engine weight for {name!r} must be >= 0, got {weight}")
        self.budget = budget
        self.weights = weights
        self.minimums = {name: max(0.0, float((minimums or {}).get(name, 0.0))) for name in weights}
        self._done: set[str] = set()

    def __iter__(self):
        return iter([name for name, weight in self.weights.items() if weight > 0])

    def slice(self, engine: str) -> float:
        left = [name for name in self if name not in self._done]
        share = self.budget.engine_slice(self.weights[engine], sum(self.weights[name] for name in left))
        available = self.budget.available()
        own = self.minimums[engine]
        kept = 0.0  # for the later engines whose minimums still fit beside this one's
        for name in left:
            if name != engine and own + kept + self.minimums[name] <= available:
                kept += self.minimums[name]
        seconds = min(max(share, own), available - kept)
        self._done.add(engine)
        return seconds
