"""How faithfully a lead was read: SNR and Pearson r against the true signal, as the PhysioNet
Challenge 2024 scores digitisers.

The read signal is brought to the true signal's sampling rate over the span it covers, then the
best time shift (within :data:`MAX_SHIFT_SECONDS`) and vertical offset are allowed: a digitiser
is not blamed for where the page's printer put the baseline or started the trace. The SNR is the
true signal's power over the error's power, in dB; the true signal keeps its own baseline
(0 mV is the isoelectric line), so a flat reading scores about 0 dB.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["MAX_SHIFT_SECONDS", "Fidelity", "lead_fidelity"]

MAX_SHIFT_SECONDS = 0.1


class Fidelity(NamedTuple):
    snr_db: float
    r: float
    shift_seconds: float  # the reading at time t matched the true signal at t + shift_seconds


def lead_fidelity(read: np.ndarray, start_seconds: float, samples_per_second: float,
                  truth: np.ndarray, truth_fs: float, max_shift: float = MAX_SHIFT_SECONDS) -> Fidelity:
    """SNR (dB) and Pearson r of ``read`` against ``truth`` at the best shift and offset.

    ``read`` has one sample every ``1 / samples_per_second`` s, its first centred half a sample
    after ``start_seconds``; NaN samples (not read) are left out. ``truth`` starts at 0 s.
    """
    read = np.asarray(read, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    times = start_seconds + (np.arange(len(read)) + 0.5) / samples_per_second
    known = np.isfinite(read)
    if known.sum() < 2:
        return Fidelity(float("nan"), float("nan"), 0.0)
    # The truth's samples inside the read span, and the reading there.
    first = int(np.ceil(times[known][0] * truth_fs))
    last = int(np.floor(times[known][-1] * truth_fs))
    at = np.arange(first, last + 1)
    estimate = np.interp(at / truth_fs, times[known], read[known])
    reach = int(round(max_shift * truth_fs))
    best = Fidelity(-np.inf, float("nan"), 0.0)
    for shift in range(-reach, reach + 1):
        where = at + shift
        inside = (where >= 0) & (where < len(truth))
        if inside.sum() < len(at) // 2:
            continue
        x, y = truth[where[inside]], estimate[inside]
        error = x - y
        error -= error.mean()  # the best vertical offset
        power, noise = float(np.sum(x * x)), float(np.sum(error * error))
        snr = 10 * np.log10(power / noise) if noise > 0 else np.inf
        if snr > best.snr_db:
            r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
            best = Fidelity(float(snr), r, shift / truth_fs)
    return best
