"""How long each engine's worker takes to start on this machine, measured and kept between searches.

A deep engine's worker spends seconds importing TensorFlow before its first trial; on a slow or
busy machine that can be most of a short slice. The search plans slices with the start-up this
machine last showed (the slowest of the last few, to stay on the safe side), and records each new
measurement. Kept in ``$SMARTECG_CACHE/engines/startup.json``; a missing or damaged file just
means the engines' own estimates are used.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from features.atomic import write_text

__all__ = ["StartupTimes"]

_KEEP = 5  # measurements kept per engine


class StartupTimes:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        if path is None:
            from features.cache import cache_root

            path = cache_root() / "engines" / "startup.json"
        self.path = Path(path)

    def estimate(self, engine: str, default: float) -> float:
        """Seconds to plan for: the slowest recent measurement, else ``default``."""
        seen = self._read().get(engine) or []
        return max(seen) if seen else float(default)

    def record(self, engine: str, seconds: float | None) -> None:
        if seconds is None or not seconds >= 0:
            return
        table = self._read()
        table[engine] = ([*table.get(engine, []), round(float(seconds), 2)])[-_KEEP:]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(table, indent=1))
        except OSError:  # a read-only cache only costs the next search its estimate
            pass

    def _read(self) -> dict[str, list[float]]:
        try:
            table = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(table, dict):
            return {}
        return {k: [float(x) for x in v if isinstance(x, (int, float))] for k, v in table.items() if isinstance(v, list)}
