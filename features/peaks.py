"""``scipy.signal.find_peaks(x, distance=d)``, the one use SmartECG makes of it, without importing scipy.signal.

Importing ``scipy.signal`` takes 1.5 s here (it loads ``scipy.stats``): most of an ONNX export's
cold start. The same algorithm on the same numbers, so the same peaks (tests/test_peaks.py checks
it against scipy): local maxima, a plateau's middle sample, none at either end; then, highest
first, every peak closer than ``distance`` samples to a kept one is dropped.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["find_peaks"]


def find_peaks(x, distance: float | None = None) -> tuple[np.ndarray, dict]:
    """(indices of the peaks of the 1-D ``x``, {}) as ``scipy.signal.find_peaks(x, distance=distance)``."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"`x` must be a 1-D array, got {x.ndim}-D")
    if distance is not None and distance < 1:
        raise ValueError("`distance` must be greater or equal to 1")
    peaks = _local_maxima(x)
    if distance is not None and len(peaks) > 1:
        peaks = peaks[_kept_by_distance(peaks, x[peaks], math.ceil(distance))]
    return peaks, {}


def _local_maxima(x: np.ndarray) -> np.ndarray:
    """Middles of the runs of equal samples that are higher than the runs on both sides."""
    if len(x) < 3:
        return np.zeros(0, dtype=np.intp)
    starts = np.flatnonzero(np.concatenate([[True], x[1:] != x[:-1]]))  # NaN != NaN: a run of its own
    ends = np.append(starts[1:] - 1, len(x) - 1)
    values = x[starts]
    inner = np.arange(1, len(starts) - 1)  # a run at either end of x is never a peak
    peak = (values[inner - 1] < values[inner]) & (values[inner + 1] < values[inner])
    chosen = inner[peak]
    return ((starts[chosen] + ends[chosen]) // 2).astype(np.intp)


def _kept_by_distance(peaks: np.ndarray, priority: np.ndarray, distance: int) -> np.ndarray:
    keep = np.ones(len(peaks), dtype=bool)
    for j in np.argsort(priority)[::-1]:  # highest first; ties in numpy's argsort order, as scipy's
        if not keep[j]:
            continue
        k = j - 1
        while k >= 0 and peaks[j] - peaks[k] < distance:
            keep[k] = False
            k -= 1
        k = j + 1
        while k < len(peaks) and peaks[k] - peaks[j] < distance:
            keep[k] = False
            k += 1
    return keep
