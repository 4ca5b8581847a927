"""Beats and RR intervals over the 10-second rhythm strip: rate, irregularity, ectopic beats, pauses.

A 3x4 panel shows 2.5 s of a lead, too little for a rhythm; the rhythm strip shows one lead for
the whole 10 s. Its R peaks are found with neurokit2's ECG cleaning and peak detector on the strip
read at the source's resolution, resampled to :data:`FS`. On the real pages of the public dataset
the rate from the strip is within 2.5 bpm of the rate the device printed (mean absolute error, 52
3x4 pages of ``ecg-real-sample``; `bench/traces.py --real`); the page-wide beats of
:mod:`features.measures` are 5.8 bpm off there. A page without a strip (6x2 printouts) gets its
beats from :mod:`features.measures`, over all its leads.
"""
from __future__ import annotations

import warnings

import numpy as np

from features.measures import page_beats
from features.pages import RHYTHM
from features.traces import LeadSignals

__all__ = ["FS", "RHYTHM_MEASURES", "beat_times", "rhythm_measures"]

FS = 500  # Hz the strip is resampled to for the detector (the rate neurokit2's defaults are made for)
RHYTHM_MEASURES = ("rate_bpm", "rr_ms", "rr_cv", "rmssd_ms", "successive_share", "premature_share",
                   "longest_pause_ratio", "beats")
_PREMATURE = 0.8  # an RR shorter than this share of the median ends in an early (ectopic) beat
_SUCCESSIVE_MS = 50.0  # pNN50's threshold


def beat_times(signals: LeadSignals) -> np.ndarray:
    """Seconds (on the page's 10 s) of the R peaks on the rhythm strip; of the page's beats without one.

    Empty when no beat can be found (a blank strip, a flat line).
    """
    if RHYTHM not in signals.mv:
        beats, segment = page_beats(signals)
        first = segment == segment[0] if len(segment) else segment.astype(bool)
        return beats[first] if first.sum() >= 3 else beats
    strip = np.asarray(signals.mv[RHYTHM], dtype=np.float64)
    rate = signals.samples_per_second
    if len(strip) < 2 or np.ptp(strip) < 0.05:  # under 0.05 mV from end to end: no trace
        return np.zeros(0)
    times = (np.arange(len(strip)) + 0.5) / rate
    resampled = np.interp(np.arange(times[0], times[-1], 1.0 / FS), times, strip)
    peaks = _r_peaks(resampled)
    return times[0] + peaks / FS + signals.start_seconds[RHYTHM]


def _r_peaks(strip: np.ndarray) -> np.ndarray:
    import neurokit2 as nk

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # neurokit2 warns on short or flat signals; the caller sees no beats
            _, info = nk.ecg_peaks(nk.ecg_clean(strip, sampling_rate=FS), sampling_rate=FS)
    except (ValueError, IndexError, ZeroDivisionError):  # too few samples or peaks for its statistics
        return np.zeros(0)
    return np.asarray(info["ECG_R_Peaks"], dtype=float)


def rhythm_measures(signals: LeadSignals) -> np.ndarray:
    """float32 (len(RHYTHM_MEASURES),): the rhythm of ``signals``' beats; 0 where undefined (fewer than 3 beats)."""
    beats = beat_times(signals)
    out = np.zeros(len(RHYTHM_MEASURES), dtype=np.float32)
    out[-1] = len(beats)
    rr = np.diff(beats)
    if len(rr) < 2:
        return out
    mean, median = rr.mean(), np.median(rr)
    successive = np.abs(np.diff(rr))
    out[:-1] = (60.0 / mean, 1000 * mean, rr.std() / mean, 1000 * np.sqrt(np.mean(successive ** 2)),
                np.mean(successive * 1000 > _SUCCESSIVE_MS), np.mean(rr < _PREMATURE * median), rr.max() / median)
    return out
