"""A representative beat per lead: the median of the lead's beats, aligned on the QRS.

Cardiologists read Q waves, the ST segment and the T wave on the median beat, where noise and
one odd beat average out. Beats are found once for the page (:func:`features.measures.page_beats`,
every lead's QRS slope at once), so every lead's window sits on the same instant of each beat.
Each lead's windows (:data:`WINDOW` s around the beat, sampled at :data:`RATE` Hz) are stacked
and their median is taken, less the level just before the QRS (the PR segment, the beat's own
isoelectric line), so ST and T are read against the same line a cardiologist uses.
"""
from __future__ import annotations

import numpy as np

from features.measures import page_beats
from features.pages import LEADS
from features.traces import LeadSignals

__all__ = ["MEDIAN_BEAT_SAMPLES", "RATE", "WINDOW", "median_beat_names", "median_beats"]

WINDOW = (-0.25, 0.45)  # s around the beat: P wave, QRS, ST and T at rates up to ~130 bpm
RATE = 50  # Hz: 20 ms steps, as fine as a QRS needs to show its width
MEDIAN_BEAT_SAMPLES = int(round((WINDOW[1] - WINDOW[0]) * RATE))
_PR = (-0.1, -0.05)  # s before the beat: the PR segment, the isoelectric line of the beat


def median_beat_names(prefix: str = "median_beat") -> tuple[str, ...]:
    offsets = WINDOW[0] + np.arange(MEDIAN_BEAT_SAMPLES) / RATE
    return tuple(f"{prefix}_{lead}_{1000 * t:+.0f}ms" for lead in LEADS for t in offsets)


def median_beats(signals: LeadSignals) -> np.ndarray:
    """float32 (12 * MEDIAN_BEAT_SAMPLES,): each lead's median beat in mV; 0 for a lead without a whole beat."""
    beats, _ = page_beats(signals)
    offsets = WINDOW[0] + np.arange(MEDIAN_BEAT_SAMPLES) / RATE
    baseline_at = np.arange(*_PR, 1.0 / RATE)
    out = np.zeros((len(LEADS), MEDIAN_BEAT_SAMPLES), dtype=np.float32)
    for row, lead in zip(out, LEADS):
        mv = signals.mv.get(lead)
        if mv is None or len(mv) < 2 or len(beats) == 0:
            continue
        times = signals.start_seconds[lead] + (np.arange(len(mv)) + 0.5) / signals.samples_per_second
        whole = beats[(beats + WINDOW[0] >= times[0]) & (beats + WINDOW[1] <= times[-1])]
        if len(whole) == 0:
            continue
        windows = np.interp(whole[:, None] + offsets, times, mv)
        baselines = np.interp(whole[:, None] + baseline_at, times, mv).mean(axis=1, keepdims=True)
        row[:] = np.median(windows - baselines, axis=0)
    return out.ravel()
