"""The leads read at the resolution the page has: one sample per source pixel column, in mV.

The page is located once at a working size (rows, skew, calibration pulses: what
:func:`features.pages.locate_leads` finds), then each lead row is cut from the full-resolution
page, deskewed, at one source pixel per pixel and one uniform vertical scale, centred on that
row's baseline. In each panel the trace is followed column by column: of the strokes of ink in a
column, the one that continues the trace wins, so a tall complex of the row above, a lead label
or a separator bar is not averaged in. A column's sample is the ink-weighted centre of the
stroke, except where the trace turns (a peak or a trough), where it is the stroke's outer edge
less half the pen: the centre of a turning stroke lies inside the curve, below the apex.

Values are millivolts above the row's baseline (where the calibration pulse stands), scaled by
the pulse's height, else by the standard 10 mm/mV at 25 mm/s.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from features.imageio import ImageReadError, ImageSource, load_image_and_size, source_name
from features.pages import GRIDS, RHYTHM, PageGeometry, ink_strength, locate_leads, resample_frame
from features.traces import LABEL_SKIP, SECONDS_ACROSS, LeadSignals, standard_px_per_mv

__all__ = ["LOCATE_SIDE", "SOURCE_RESOLUTION", "LayoutNotRecognised", "SourcePage", "blank_source_page",
           "read_source_page", "source_lead_signals"]

# The page "size" of feature sets that read a SourcePage (features.handcrafted.FeatureSet.size).
SOURCE_RESOLUTION = (0, 0)

LOCATE_SIDE = 1024  # px of the page's shorter side where rows and pulses are found (as normalise_page)
INK = 0.35  # ink strength (0 paper, 1 darkest ink) above which a pixel is trace ink
# A stroke's centre is weighed by its ink above this: the pen's grey, anti-aliased rim is where
# a stroke is found, not where its centre lies (clean synthetic pages: SNR 12.2 -> 13.5 dB).
CORE = 0.7
SEPARATOR_SHARE = 0.9  # a stroke across this share of the row's height is a bar, not the trace


class LayoutNotRecognised(ImageReadError):
    """No lead rows or calibration could be found: the page is not read with a guessed layout."""


@dataclass(frozen=True)
class SourcePage:
    """A page's leads at source resolution, and where they were read."""

    signals: LeadSignals
    layout: str
    geometry: PageGeometry  # in the source's pixels
    lead_boxes: dict[str, tuple[float, float, float, float]]  # per lead, (x0, y0, x1, y1) in the deskewed frame
    baselines: dict[str, float]  # per lead, frame y of its 0 mV line
    source_size: tuple[int, int]

    def without_leads(self, leads) -> SourcePage:
        """A copy with ``leads`` read as flat lines (what LIME's neutral lead is on a normalised page)."""
        mv = {name: np.zeros_like(v) if name in leads else v for name, v in self.signals.mv.items()}
        return replace(self, signals=replace(self.signals, mv=mv))


def blank_source_page(layout: str = "3x4", rhythm: bool = True) -> SourcePage:
    """Flat leads where a page has none to read: every value a set derives from it is 0."""
    width = 2000
    rate = width / SECONDS_ACROSS
    mv, start = {}, {}
    for row in _row_panels(layout, rhythm, width):
        for lead, first, last in row:
            mv[lead], start[lead] = np.zeros(last - first, dtype=np.float32), (first - 0.5) / rate
    signals = LeadSignals(mv=mv, start_seconds=start, samples_per_second=rate,
                          px_per_mv=standard_px_per_mv(width), calibrated=False)
    geometry = PageGeometry(layout, rhythm, (0.0, 0.0, float(width), 1.0), 0.0, (0.0, 0.0), "blank")
    return SourcePage(signals, layout, geometry, {}, {}, (width, 1))


def _row_panels(layout: str, rhythm: bool, width: int) -> list[list[tuple[str, int, int]]]:
    """Per row of the lead area, its panels as (lead, first column read, column after the last).

    A panel is read from past its label: the lead's name is printed over its start, often
    touching the trace. The rhythm strip spans the whole width.
    """
    rows = list(GRIDS[layout]) + ([(RHYTHM,)] if rhythm else [])
    columns = len(rows[0])
    skip = LABEL_SKIP * width / columns
    out = []
    for leads in rows:
        span = width / (columns if len(leads) == columns else 1)
        out.append([(lead, int(round(j * span + skip)), int(round((j + 1) * span))) for j, lead in enumerate(leads)])
    return out


def source_lead_signals(source: ImageSource) -> LeadSignals:
    """:class:`~features.traces.LeadSignals` read at the source's resolution (see the module)."""
    return read_source_page(source).signals


def read_source_page(source: ImageSource, *, strict: bool = True) -> SourcePage:
    """Read every lead (and the rhythm strip) of ``source``.

    A page without recognisable lead rows raises :class:`LayoutNotRecognised`, or, with
    ``strict=False`` (feature extraction: one page must not stop a search), reads as
    :func:`blank_source_page`. An unreadable file raises :class:`ImageReadError` either way.
    """
    grey, source_size = load_image_and_size(source)
    try:
        geometry = _located(source, grey.shape)
    except LayoutNotRecognised:
        if strict:
            raise
        return blank_source_page()
    strength = ink_strength(grey)
    pitch = float(np.median(np.diff(geometry.baselines)))
    x0, _, x1, _ = geometry.area
    width = int(round(x1 - x0))
    # Column k is centred on frame x = x0 + k, so bilinear sampling blends neighbouring source
    # columns by the lead area's fractional edge; that light smoothing of the pen's jagged edge
    # is worth ~1 dB of SNR on clean synthetic pages over whole source columns (13.6 vs 12.4).
    xs = x0 - 0.5 + np.arange(width, dtype=float)  # array index of frame columns
    samples_per_second = width / SECONDS_ACROSS
    px_per_mv, calibrated = _px_per_mv(geometry, width)
    half = int(round(pitch / 2))
    mv, start_seconds, lead_boxes, baselines = {}, {}, {}, {}
    for baseline, row in zip(geometry.baselines, _row_panels(geometry.layout, geometry.rhythm, width)):
        ys = baseline - 0.5 + np.arange(-half, half + 1, dtype=float)  # array index of frame rows
        band = resample_frame(strength, geometry, ys, xs)
        for lead, first, last in row:
            rows_read = _follow(band[:, first:last], pen=_pen(band[:, first:last]))
            mv[lead] = ((half - rows_read) / px_per_mv).astype(np.float32)  # row `half` is the baseline
            # t = 0 at the lead area's left edge; sample i is centred (i + 0.5) / rate after the start
            start_seconds[lead] = (first - 0.5) / samples_per_second
            lead_boxes[lead] = (x0 + first - 0.5, baseline - half - 0.5, x0 + last - 0.5, baseline + half + 0.5)
            baselines[lead] = baseline
    signals = LeadSignals(mv=mv, start_seconds=start_seconds, samples_per_second=samples_per_second,
                          px_per_mv=px_per_mv, calibrated=calibrated)
    return SourcePage(signals, geometry.layout, geometry, lead_boxes, baselines, source_size)


def _located(source: ImageSource, shape: tuple[int, int]) -> PageGeometry:
    """The page's geometry found as normalise_page finds it (a reduced decode), in the source's pixels."""
    small, _ = load_image_and_size(source, min_side=LOCATE_SIDE)
    factor = shape[1] / small.shape[1]
    found = locate_leads(small)
    if found.method != "projection":
        raise LayoutNotRecognised(source_name(source), "no rows of ECG traces found, so the layout is unknown",
                                  "give a 12-lead page in the 3x4 or 6x2 layout, upright and whole")
    return replace(found, area=tuple(np.asarray(found.area) * factor), centre=tuple(np.asarray(found.centre) * factor),
                   baselines=tuple(b * factor for b in found.baselines), pulse_height=found.pulse_height * factor)


def _px_per_mv(geometry: PageGeometry, width: int) -> tuple[float, bool]:
    if geometry.pulse_height > 0:
        return float(geometry.pulse_height), True
    return standard_px_per_mv(width), False


def _pen(band: np.ndarray) -> float:
    """The pen's width in rows: the commonest stroke length (the trace is mostly flat)."""
    ink = band > INK
    lengths = ink.sum(axis=0)
    lengths = lengths[(lengths > 0) & (lengths < band.shape[0] // 8)]
    return float(np.median(lengths)) if len(lengths) else 2.0


def _strokes(ink_column: np.ndarray) -> np.ndarray:
    """(n, 2) first and last row of each run of ink in a column."""
    edges = np.flatnonzero(np.diff(np.r_[0, ink_column.astype(np.int8), 0]))
    return edges.reshape(-1, 2) - np.array([0, 1])


def _first_stroke(ink_column: np.ndarray, height: int) -> tuple[float, float]:
    """Where following starts: the stroke nearest the baseline (the panel's middle row)."""
    runs = _strokes(ink_column)
    if not len(runs):
        return (height / 2, height / 2)
    a, b = runs[np.argmin(np.abs(runs.mean(axis=1) - height / 2))]
    return (float(a), float(b))


def _follow(band: np.ndarray, pen: float) -> np.ndarray:
    """Row of the trace in every column of a panel (float; interpolated where no stroke continues it)."""
    height, width = band.shape
    ink = band > INK
    centre = np.full(width, np.nan)
    top = np.full(width, np.nan)
    bottom = np.full(width, np.nan)
    last, missed = _first_stroke(ink[:, 0], height), 0
    for c in range(width):
        runs = _strokes(ink[:, c])
        runs = runs[(runs[:, 1] - runs[:, 0] + 1) < SEPARATOR_SHARE * height]
        # A pen line is unbroken: its stroke in this column touches its stroke in the last one
        # (text, grid remnants and the next row's complexes lie apart from it).
        reach = 1 + 2 * missed + 2 * pen  # a steep stroke's faint middle can part two columns' runs
        touching = runs[(runs[:, 0] <= last[1] + reach) & (runs[:, 1] >= last[0] - reach)] if len(runs) else runs
        if not len(touching):
            missed += 1
            continue
        # The stroke sharing most rows with the last one: at an R spike's foot a speck beside
        # the baseline is nearer the last stroke's centre than the spike that continues it.
        overlap = np.minimum(touching[:, 1], last[1]) - np.maximum(touching[:, 0], last[0])
        nearest = np.abs(touching.mean(axis=1) - (last[0] + last[1]) / 2)
        a, b = touching[np.lexsort((nearest, -overlap))[0]]
        weights = np.maximum(band[a:b + 1, c] - CORE, 0.0) + 1e-6
        centre[c] = a + float(np.arange(b - a + 1) @ weights) / max(float(weights.sum()), 1e-9)
        top[c], bottom[c] = a, b
        last, missed = (a, b), 0
    known = np.isfinite(centre)
    if not known.any():
        return np.full(width, height / 2.0)
    columns = np.arange(width)
    value = centre.copy()
    # Where the trace turns, its stroke's outer edge (less half the pen) is the apex.
    left, right = np.r_[np.nan, centre[:-1]], np.r_[centre[1:], np.nan]
    up = (centre < left) & (centre <= right)  # rows grow downwards: a peak is a minimum row
    down = (centre > left) & (centre >= right)
    value[up] = np.minimum(centre[up], top[up] + pen / 2)
    value[down] = np.maximum(centre[down], bottom[down] - pen / 2)
    return np.interp(columns, columns[known], value[known])
