"""How much of the machine a search keeps busy: CPU time of the search and every process under it.

``time`` on a search misses worker processes that are killed rather than waited for (TPOT's Dask
workers at the end of a slice), so the share is sampled from the operating system instead: every
``interval`` seconds the CPU time of the search process and all its descendants (alive at that
moment) is read with psutil, and each process's increase since it was last seen is added up. A
process that ends between two samples loses at most one interval of its time.
"""
from __future__ import annotations

import os
import threading
import time

__all__ = ["CoreUse", "available_cores"]


class CoreUse:
    """A background sampler; ``share(start, end)`` is busy CPU seconds / (wall seconds x cores)."""

    def __init__(self, interval: float = 2.0, cores: int | None = None) -> None:
        self.interval = interval
        self.cores = cores or available_cores()
        self.samples: list[tuple[float, float]] = []  # (monotonic time, CPU seconds so far)
        self._seen: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds when last seen
        self._total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smartecg-core-use", daemon=True)

    def start(self) -> "CoreUse":
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def share(self, start: float | None = None, end: float | None = None) -> float:
        """Busy share of all cores between two monotonic times (default: everything sampled)."""
        window = [(t, c) for t, c in self.samples if (start is None or t >= start) and (end is None or t <= end)]
        if len(window) < 2 or window[-1][0] <= window[0][0]:
            return float("nan")
        (t0, c0), (t1, c1) = window[0], window[-1]
        return (c1 - c0) / ((t1 - t0) * self.cores)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        import psutil

        try:
            me = psutil.Process()
            processes = [me, *me.children(recursive=True)]
        except psutil.Error:
            return
        for process in processes:
            try:
                with process.oneshot():
                    key = (process.pid, process.create_time())
                    times = process.cpu_times()
                    cpu = times.user + times.system
            except psutil.Error:  # gone since it was listed
                continue
            self._total += max(0.0, cpu - self._seen.get(key, 0.0))
            self._seen[key] = cpu
        self.samples.append((time.monotonic(), self._total))


def available_cores() -> int:
    """CPU cores this process may use (the container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
