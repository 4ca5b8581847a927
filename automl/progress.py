"""The live line a search prints: elapsed of budget, engine, trials done, best score so far.

On a terminal it rewrites one line in place; elsewhere (CI logs, pipes) it prints a plain line
at most every ``interval`` seconds, so logs stay readable.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from automl.budget import Budget, format_duration

__all__ = ["SearchProgress"]


class SearchProgress:
    def __init__(self, budget: Budget, metric: str, *, stream: TextIO | None = None, enabled: bool = True,
                 interval: float = 15.0) -> None:
        self.budget = budget
        self.metric = metric
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.stage = "starting"
        self.stage_seconds: dict[str, float] = {}  # wall seconds per stage name
        self._stage_name, self._stage_start = "starting", time.monotonic()
        self.trials = 0
        self.failed = 0
        self.best: float | None = None
        self._last_print = time.monotonic()  # off a terminal, the first line comes after one interval

    def set_stage(self, stage: str, *, shown_as: str | None = None) -> None:
        now = time.monotonic()
        self.stage_seconds[self._stage_name] = self.stage_seconds.get(self._stage_name, 0.0) + now - self._stage_start
        self._stage_name, self._stage_start = stage, now
        self.stage = shown_as or stage
        self.show(force=self.tty)

    def trial(self, score: float | None, ok: bool) -> None:
        self.trials += 1
        if not ok:
            self.failed += 1
        if ok and score is not None and (self.best is None or score > self.best):
            self.best = score
        self.show()

    def line(self) -> str:
        best = f"best CV {self.metric} {self.best:.3f}" if self.best is not None else "no score yet"
        failed = f" ({self.failed} failed)" if self.failed else ""
        return (f"search {format_duration(self.budget.elapsed())} / {format_duration(self.budget.seconds)}"
                f" | {self.stage} | {self.trials} trials{failed} | {best}")

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if force or now - self._last_print >= 0.2:
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
                self._last_print = now
        elif force or now - self._last_print >= self.interval:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last_print = now

    def message(self, text: str) -> None:
        """A line of its own (a warning, a stage result), without breaking the live line."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self.show(force=self.tty)

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\033[K" + self.line() + "\n")
            self.stream.flush()
