"""Per-lead 1-D signals read off a normalised page: one sample per page column, in millivolts.

Each lead panel becomes the height of its trace in every column (the ink-weighted level of the
trace ink; grid and labels are already gone or skipped, columns without ink are interpolated),
measured from the trace's median level and scaled to millivolts with the page's calibration
pulse when one was found. The lead area spans 10 s across its width in every layout, so a
column is a fixed slice of time and the leads shown in one column of the page are simultaneous.

:func:`read_traces` is the shared reader (the ``trace`` feature set reads it at its own size);
:func:`lead_signals` gives the signals in physical units; :func:`signal_matrix` stacks them at
one length for a 1-D network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from features.pages import LEADS, RHYTHM, NormalisedPage

__all__ = ["LABEL_SKIP", "SECONDS_ACROSS", "SHORTEST_LEAD_SECONDS", "SIGNAL_SIZE", "LeadSignals", "Traces",
           "label_skip", "lead_signals", "read_traces", "rows_per_mv", "signal_matrix", "standard_px_per_mv"]

# Signals are read off pages normalised at this (height, width). At the default 320x512 the
# traces correlate with the generator's signals at median r 0.83-0.94 per lead (chest leads
# below 0.9: tall, thin QRS complexes merge into few columns); at 640x1024 at 0.92-0.97 for
# every lead (bench/traces.py).
SIGNAL_SIZE = (640, 1024)

INK = 0.5  # darker than this is trace ink: where the trace's level is read
# Thin R spikes come out grey after normalisation; the trace's vertical extent (peaks, Q) is read
# from fainter ink so their tips are not lost (rate error p90 on synthetic pages: 32 -> 13 bpm).
FAINT_INK = 0.8
SECONDS_ACROSS = 10.0  # 3x4 (4 x 2.5 s) and 6x2 (2 x 5 s) both put 10 s across the lead area
LABEL_SKIP = 0.1  # share of a lead panel skipped at its left, where the lead name is printed
SHORTEST_LEAD_SECONDS = 2.5 * (1 - LABEL_SKIP)  # what every layout shows of each lead (3x4 panels)

# Standard paper speed and gain: the fallback scale when a page has no calibration pulse.
MM_PER_SECOND = 25.0
MM_PER_MV = 10.0


class Traces(NamedTuple):
    """The traces of boxes of one size, per box and column, in box heights above the box centre."""

    level: np.ndarray  # (boxes, columns): ink-weighted mean height of the ink
    top: np.ndarray  # highest ink, faint ink included
    bottom: np.ndarray  # lowest ink, faint ink included
    density: np.ndarray  # (boxes,): share of the box's pixels that are ink; 0 means no trace


@dataclass(frozen=True)
class LeadSignals:
    """The leads of one page as 1-D signals.

    ``mv`` maps each lead of :data:`~features.pages.LEADS` (and ``RHYTHM`` when the page has a
    rhythm strip) to float32 millivolts relative to the trace's median level, one sample per
    page column after the label. ``start_seconds`` is where each signal's first column begins
    on the 10 s of the lead area. ``px_per_mv`` is the page rows per millivolt used, from the
    calibration pulse when ``calibrated``, else from the standard 10 mm/mV at 25 mm/s.
    """

    mv: dict[str, np.ndarray]
    start_seconds: dict[str, float]
    samples_per_second: float
    px_per_mv: float
    calibrated: bool


def label_skip(page: NormalisedPage) -> int:
    """Columns left out at the left of every panel, where the lead name is printed."""
    first = page.lead_boxes[LEADS[0]]
    return int(round(LABEL_SKIP * (first[2] - first[0])))


def lead_signals(page: NormalisedPage) -> LeadSignals:
    """Every lead's trace in millivolts, read off ``page`` (best normalised at :data:`SIGNAL_SIZE`)."""
    samples_per_second = page.image.shape[1] / SECONDS_ACROSS
    px_per_mv, calibrated = _px_per_mv(page)
    skip = label_skip(page)
    # Leads share one box size and are read in one pass; the rhythm strip is wider.
    groups = [list(LEADS)] + ([[RHYTHM]] if page.rhythm else [])
    mv = {}
    for group in groups:
        boxes = [page.lead_boxes[name] for name in group]
        traces = read_traces(page.image, boxes, skip)
        box_height = max(1, int(round(boxes[0][3] - boxes[0][1])))
        level = traces.level - np.median(traces.level, axis=1, keepdims=True)
        for name, row in zip(group, level * (box_height / px_per_mv)):
            mv[name] = row.astype(np.float32)
    # read_traces starts at the box's column rounded, plus the skip
    start_seconds = {name: (round(page.lead_boxes[name][0]) + skip) / samples_per_second for name in mv}
    return LeadSignals(mv=mv, start_seconds=start_seconds, samples_per_second=samples_per_second,
                       px_per_mv=px_per_mv, calibrated=calibrated)


def signal_matrix(signals: LeadSignals, length: int = 256,
                  seconds: float | None = SHORTEST_LEAD_SECONDS) -> np.ndarray:
    """float32 (12, ``length``): the leads in LEADS order, each resampled linearly to ``length``.

    By default every lead is cut to its first :data:`SHORTEST_LEAD_SECONDS` (what a 3x4 panel
    shows), so one sample spans the same time whatever the layout and a network cannot tell
    3x4 from 6x2 by the width of the complexes; ``seconds=None`` keeps each lead's whole span
    (2.25 s on 3x4 pages, 4.5 s on 6x2 pages).
    """
    out = np.zeros((len(LEADS), length), dtype=np.float32)
    for row, lead in zip(out, LEADS):
        signal = signals.mv[lead]
        span = len(signal) if seconds is None else seconds * signals.samples_per_second
        # Sample centres of the output, in input samples; np.interp holds the ends beyond them.
        where = (np.arange(length) + 0.5) * (span / length) - 0.5
        row[:] = np.interp(where, np.arange(len(signal)), signal)
    return out


def read_traces(image: np.ndarray, boxes, skip: int) -> Traces:
    """The trace in each box (its first ``skip`` columns left out).

    The boxes of a normalised page share one size, so all are read in one vectorised pass.
    Columns without ink are interpolated from their neighbours.
    """
    x0, y0, x1, y1 = boxes[0]
    height, width = max(1, int(round(y1 - y0))), max(1, int(round(x1 - x0)) - skip)
    crops = np.ones((len(boxes), height, width), dtype=image.dtype)  # white beyond the page's edge
    for crop, box in zip(crops, boxes):
        x, y = int(round(box[0])) + skip, int(round(box[1]))
        part = image[max(0, y):y + height, max(0, x):x + width]
        crop[:part.shape[0], :part.shape[1]] = part
    ink, faint = crops < INK, crops < FAINT_INK
    weight = np.subtract(1.0, crops)
    weight *= ink  # np.where(ink, 1 - crops, 0), ten times faster
    mass = weight.sum(axis=1)
    rows_of = {
        "level": (np.arange(height, dtype=np.float32) @ weight / np.maximum(mass, 1e-12), mass > 0),
        "top": (faint.argmax(axis=1), faint.any(axis=1)),  # first faint pixel from the top
        "bottom": (height - 1 - faint[:, ::-1].argmax(axis=1), faint.any(axis=1)),
    }
    columns = np.arange(width)
    heights = {}
    for name, (row, present) in rows_of.items():
        row = row.astype(np.float64)
        for i in np.flatnonzero(~present.all(axis=1) & present.any(axis=1)):  # fill gaps from neighbours
            row[i] = np.interp(columns, columns[present[i]], row[i, present[i]])
        heights[name] = ((height - 1) / 2 - row) / height
    return Traces(heights["level"], heights["top"], heights["bottom"], ink.mean(axis=(1, 2)))


def rows_per_mv(page: NormalisedPage) -> float:
    """Rows of ``page.image`` per millivolt: the calibration pulse's, else the standard 10 mm/mV."""
    return _px_per_mv(page)[0]


def _px_per_mv(page: NormalisedPage) -> tuple[float, bool]:
    """(page rows per millivolt, whether it came from the page's calibration pulse).

    Without a pulse, the page is taken to be printed at the standard 25 mm/s and 10 mm/mV:
    the lead area's 10 s are then 250 mm wide, and 1 mV is 10 mm, scaled from columns to rows
    by the page's pixel aspect. The row pitch is no help here: it differs between devices and
    layouts (38 mm on EDAN 3x4 pages, 26 mm on 6x2 pages).
    """
    if page.px_per_mv > 0:
        return float(page.px_per_mv), True
    return standard_px_per_mv(page.image.shape[1], page.pixel_aspect), False


def standard_px_per_mv(columns: float, pixel_aspect: float = 1.0) -> float:
    """Rows per millivolt of a lead area ``columns`` wide printed at the standard 25 mm/s and 10 mm/mV."""
    columns_per_mm = columns / (SECONDS_ACROSS * MM_PER_SECOND)
    return float(MM_PER_MV * columns_per_mm * pixel_aspect)
