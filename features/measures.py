"""Measures a cardiologist reads off the per-lead signals of a page, in mV and ms.

Beats are found once for the whole page: every column of the lead area is a slice of time, and
the leads printed in one column of the page (and the rhythm strip) are simultaneous, so their
QRS slopes add up; a beat missed in a lead with a small QRS is still found in the others. Each
lead is then measured at the beats that fall on its panel, median over those beats:

* ``r_mv``: the highest point within 50 ms of the beat, above the trace's median level.
* ``qrs_ms``: from the first to the last sample within 120 ms of the beat whose slope reaches a
  fifth of the beat's steepest slope (the QRS is the steep part of a beat; P, ST and T are not).
* ``st_mv``: mean level 60-120 ms after the QRS peak (the largest deflection within 50 ms of
  the beat), which puts the window at J + 20-80 ms for a QRS of normal width.
* ``q_mv``: depth (positive) of the lowest point in the 80 ms before the R peak.
* ``t_mv``: signed mean level from 0.2 sqrt(RR) to 0.4 sqrt(RR) s after the QRS peak (200-400
  ms at 60 bpm; the T wave comes closer to the QRS as the rate rises, as in Bazett's QT).

Levels are relative to each signal's zero: the trace's median level for
:func:`features.traces.lead_signals` (the isoelectric line, where the trace spends most of its
time), the row's printed baseline for :mod:`features.source_traces` (so baseline wander is in
them). Global measures: mean RR (ms) and its coefficient of variation from
consecutive beats on one unbroken stretch of panels, the rate (bpm) from the mean RR, and the
widest beat's QRS (ms, median over the leads that show it; ectopic beats are wide).
Everything undefined (no beats, no trace) is 0.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from features.pages import LEADS, NormalisedPage
from features.peaks import find_peaks
from features.traces import SECONDS_ACROSS, LeadSignals, lead_signals

__all__ = ["GLOBAL_MEASURES", "LEAD_MEASURES", "measure_names", "measures_of", "page_beats", "signal_measures"]

LEAD_MEASURES = ("r_mv", "qrs_ms", "st_mv", "q_mv", "t_mv")
GLOBAL_MEASURES = ("rr_ms", "rr_cv", "rate_bpm", "widest_qrs_ms")

_MIN_RR = 0.25  # s between beats (240 bpm)
_BEAT_SHARE = 0.4  # of the typical beat's QRS slope: wide ectopic beats are less steep, T waves far less
_FLAT_SLOPE = 5.0  # mV/s: slopes below this are ink noise, not a QRS (a 1 mV R rises at ~60 mV/s)
_QRS_SLOPE_SHARE = 0.2
_PEAK_REACH = 0.05  # s either side of a beat where its R and QRS peaks are looked for
_QRS_REACH = 0.12
_Q_REACH = 0.08
_ST_WINDOW = (0.06, 0.12)
_T_WINDOW = (0.2, 0.4)  # times sqrt(RR in s)


def measure_names(prefix: str) -> tuple[str, ...]:
    """Column names, per lead in LEADS order then global: ``{prefix}_V2_st_mv``... ``{prefix}_rate_bpm``."""
    return (tuple(f"{prefix}_{lead}_{m}" for lead in LEADS for m in LEAD_MEASURES)
            + tuple(f"{prefix}_{m}" for m in GLOBAL_MEASURES))


def signal_measures(page: NormalisedPage) -> np.ndarray:
    """float32 (12 * 5 + 4,): :data:`LEAD_MEASURES` per lead, then :data:`GLOBAL_MEASURES`."""
    return measures_of(lead_signals(page))


def measures_of(signals: LeadSignals) -> np.ndarray:
    """:func:`signal_measures` of signals already read."""
    beats, segment = page_beats(signals)
    rr = _rr_intervals(beats, segment)
    rr_s = float(rr.mean()) if len(rr) else 0.0
    per_lead = np.zeros((len(LEADS), len(LEAD_MEASURES)))
    widths = np.full((len(beats), len(signals.mv)), np.nan)  # QRS width of every beat in every signal
    for j, (name, mv) in enumerate(signals.mv.items()):
        local = np.floor(beats * signals.samples_per_second).astype(int) - _first_column(signals, name)
        on_panel = (local >= 0) & (local < len(mv))
        values, beat_widths = _lead_measures(mv, local[on_panel], signals.samples_per_second, rr_s)
        widths[on_panel, j] = beat_widths
        if name in LEADS:
            per_lead[LEADS.index(name)] = values
    seen = np.isfinite(widths).any(axis=1)
    widest = _row_medians(widths[seen]).max() if seen.any() else 0.0
    rhythm = [rr_s * 1000, rr.std() / rr_s if rr_s else 0.0, 60 / rr_s if rr_s else 0.0, widest]
    out = np.concatenate([per_lead.ravel(), rhythm]).astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _first_column(signals: LeadSignals, name: str) -> int:
    return int(round(signals.start_seconds[name] * signals.samples_per_second))


def page_beats(signals: LeadSignals) -> tuple[np.ndarray, np.ndarray]:
    """(beat times in s on the lead area, the stretch of panels each beat lies on).

    Each signal's slope is scaled by its own steepest (98th percentile) so that a lead with a
    small QRS counts as much as one with a tall QRS; columns average the signals they show.
    """
    rate = signals.samples_per_second
    columns = int(round(SECONDS_ACROSS * rate))
    energy, shown = np.zeros(columns), np.zeros(columns)
    for name, mv in signals.mv.items():
        slope = np.abs(np.gradient(mv.astype(np.float64))) * rate if len(mv) > 1 else np.zeros(len(mv))
        steep = np.percentile(slope, 98) if len(slope) else 0.0
        if steep < _FLAT_SLOPE:
            continue  # no trace, or one too flat to show a QRS
        first = _first_column(signals, name)
        part = slice(max(0, first), min(columns, first + len(mv)))
        energy[part] += np.minimum(slope / steep, 1.0)[part.start - first:part.stop - first]
        shown[part] += 1
    energy = uniform_filter1d(energy / np.maximum(shown, 1), 3)
    segment = np.cumsum(np.r_[0, np.diff((shown > 0).astype(int)) != 0])  # label of each unbroken stretch
    candidates, _ = find_peaks(energy, distance=max(1.0, _MIN_RR * rate))
    candidates = candidates[shown[candidates] > 0]
    if len(candidates) == 0:
        return np.zeros(0), np.zeros(0, dtype=int)
    keep = candidates[energy[candidates] >= _BEAT_SHARE * np.percentile(energy[candidates], 90)]
    return (keep + 0.5) / rate, segment[keep]  # the middle of the beat's column


def _rr_intervals(beats: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Seconds between consecutive beats on the same stretch (a 6x2 page has two: no RR spans the label)."""
    rr = np.diff(beats)
    return rr[segment[1:] == segment[:-1]]


def _lead_measures(mv: np.ndarray, beats: np.ndarray, rate: float, rr_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(LEAD_MEASURES median over ``beats``, the QRS width of each beat in ms); beats index ``mv``."""
    if len(beats) == 0:
        return np.zeros(len(LEAD_MEASURES)), np.zeros(0)
    reach = max(1, int(round(_PEAK_REACH * rate)))
    around = _window(mv, beats, -reach, reach + 1)
    # The beat itself is on the panel, so every row of ``around`` holds a number.
    r_mv = np.nanmax(around, axis=1)
    r_at = beats - reach + np.nanargmax(around, axis=1)
    qrs_peak = beats - reach + np.nanargmax(np.abs(around), axis=1)
    q_mv = -np.fmin(np.nanmin(_window(mv, r_at, -int(round(_Q_REACH * rate)), 1), axis=1), 0.0)
    st_mv = _row_means(_window(mv, qrs_peak, *_seconds_to_samples(_ST_WINDOW, rate)))
    t_window = np.multiply(_T_WINDOW, np.sqrt(rr_s)) if rr_s else _T_WINDOW
    t_mv = _row_means(_window(mv, qrs_peak, *_seconds_to_samples(t_window, rate)))
    qrs_ms = _qrs_widths(mv, beats, rate)
    return _row_medians(np.stack([r_mv, qrs_ms, st_mv, q_mv, t_mv])), qrs_ms


def _qrs_widths(mv: np.ndarray, beats: np.ndarray, rate: float) -> np.ndarray:
    """ms from the first to the last sample near each beat whose slope is a fifth of its steepest."""
    reach = int(round(_QRS_REACH * rate))
    slope = np.abs(_window(np.gradient(mv) if len(mv) > 1 else mv * 0, beats, -reach, reach + 1))
    steep = slope >= _QRS_SLOPE_SHARE * np.nanmax(slope, axis=1, keepdims=True)
    first = steep.argmax(axis=1)
    last = steep.shape[1] - 1 - steep[:, ::-1].argmax(axis=1)
    # A window cut by the panel's edge cannot show where the QRS starts or ends.
    complete = ~np.isnan(slope).any(axis=1)
    return np.where(complete, (last - first + 1) / rate * 1000, np.nan)


def _window(signal: np.ndarray, at: np.ndarray, start: int, stop: int) -> np.ndarray:
    """(len(at), stop - start): signal[a + start : a + stop] for each a, NaN beyond the ends."""
    index = np.asarray(at)[:, None] + np.arange(start, max(stop, start + 1))
    inside = (index >= 0) & (index < len(signal))
    return np.where(inside, signal[np.clip(index, 0, len(signal) - 1)], np.nan)


def _seconds_to_samples(window, rate: float) -> tuple[int, int]:
    start = int(round(window[0] * rate))
    return start, max(start + 1, int(round(window[1] * rate)))


def _row_means(values: np.ndarray) -> np.ndarray:
    """Mean of each row's numbers; NaN for a row with none (a window past the panel's end)."""
    count = np.count_nonzero(~np.isnan(values), axis=1)
    return np.where(count > 0, np.nansum(values, axis=1) / np.maximum(count, 1), np.nan)


def _row_medians(values: np.ndarray) -> np.ndarray:
    """Median of each row's numbers (NaN left out), 0 for a row with none; one sort for all rows."""
    ordered = np.sort(values, axis=1)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(values), axis=1)
    rows = np.arange(len(values))
    middle = (ordered[rows, np.maximum((count - 1) // 2, 0)] + ordered[rows, count // 2]) / 2
    return np.where(count > 0, middle, 0.0)
