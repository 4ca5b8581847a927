"""Page normalisation: from any ECG page to the same lead-area geometry, grid suppressed.

``normalise_page`` measures the small skew from how the rows of traces shift between the left
and the right of the page, finds each lead row's baseline (from the calibration pulses printed at
the start of every row, else from projections of the traces, not the grid, so gridless pages work
too), finds where the traces start and end, and resamples only the lead area to a fixed working
size, each baseline on the middle of its row. The header, footer, calibration pulses and page
margins are left out, so a model sees the same geometry whatever the source page looked like and
page size or printed header text cannot stand in for the diagnosis.

Lead panels come from the row count: 3 rows (3x4) or 6 rows (6x2), each optionally followed by
a rhythm strip. Pages where no such row pattern is found fall back to fixed fractions of the
inked area (``NormalisedPage.method == "fixed-fraction"``) and say so.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from features.imageio import ImageReadError, ImageSource, load_image_and_size, source_name

__all__ = [
    "DEFAULT_SIZE",
    "LEADS",
    "MIN_PAGE_SIDE",
    "RHYTHM",
    "NormalisedPage",
    "PageGeometry",
    "canonical_boxes",
    "flatten_leads",
    "lead_tiles",
    "locate_leads",
    "mask_outside_leads",
    "normalise_page",
]

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
RHYTHM = "II_rhythm"
DEFAULT_SIZE = (320, 512)  # (height, width) of the normalised lead area, about the EDAN aspect

# Panel order per layout, row by row: 3x4 is I/aVR/V1/V4 across; 6x2 has limb leads left.
_GRIDS = {
    "3x4": (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6")),
    "6x2": (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6")),
}
MIN_PAGE_SIDE = 128  # px; below this a page cannot hold 12 readable leads

_LAYOUT_BY_ROWS = {3: ("3x4", False), 4: ("3x4", True), 6: ("6x2", False), 7: ("6x2", True)}

_INK_LEVEL = 0.35  # share of the paper-to-ink contrast above which a pixel counts as trace ink
_DARK_INK_LEVEL = 0.7  # the same on pages whose grid is as dark as their traces (some scans)
_GRID_FLOOR = 0.25  # fainter than this (grid, paper texture) is painted white in the output
_MAX_SKEW = np.tan(np.deg2rad(3.0))

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PageGeometry:
    """Where the leads are on a decoded page, in that array's pixel coordinates.

    The lead area is the rectangle ``(x0, y0, x1, y1)`` after undoing the skew ``slope`` (the
    rows' dy/dx), measured about the page centre ``centre``.
    """

    layout: str
    rhythm: bool
    area: Box
    slope: float
    centre: tuple[float, float]
    method: str  # "projection" or "fixed-fraction"
    baselines: tuple[float, ...] = ()  # y of each lead row's baseline, top to bottom
    grid: bool = True  # printed on graph paper (False: blank paper, as some 6x2 printouts are)
    pulse_height: float = 0.0  # of the 1 mV calibration pulses, between stroke centres; 0: none found

    @property
    def skew_deg(self) -> float:
        """Counter-clockwise tilt of the page in degrees (PIL's ``rotate`` convention)."""
        return float(-np.degrees(np.arctan(self.slope)))

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Map (x, y) points of the deskewed frame to the decoded page's pixels."""
        return np.column_stack(_frame_to_source(points[:, 0], points[:, 1], self.slope, self.centre))


def _frame_to_source(x, y, slope: float, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Where the deskewed frame's point (x, y) lies on the tilted page; arrays broadcast.

    Continuous coordinates (pixel i spans [i, i + 1)); the rotation is about ``centre``.
    """
    a = np.arctan(slope)
    dx, dy = x - centre[0], y - centre[1]
    return centre[0] + dx * np.cos(a) - dy * np.sin(a), centre[1] + dx * np.sin(a) + dy * np.cos(a)


@dataclass
class NormalisedPage:
    """A page resampled to the lead area at a fixed size, with its lead panels.

    ``image`` is float32 (H, W) with 1.0 paper and 0.0 ink; ``lead_boxes`` are in ``image``
    pixels, ``source_boxes`` in the original file's pixels (axis-aligned hulls when skewed).

    The calibration pulses are outside the lead area, so their size is kept here:
    ``px_per_mv`` is how many ``image`` rows the printed 1 mV pulse spans (0.0 when no pulse was
    found), and ``pixel_aspect`` how many rows a length of paper spans per column it spans
    when laid horizontally (1.0 when the lead area was resampled alike both ways).
    """

    image: np.ndarray
    lead_boxes: dict[str, Box]
    source_boxes: dict[str, Box]
    layout: str
    rhythm: bool
    method: str
    skew_deg: float
    source_size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)
    grid: bool = True
    px_per_mv: float = 0.0
    pixel_aspect: float = 1.0

    def without_leads(self, leads) -> NormalisedPage:
        """:func:`flatten_leads` of this page (a SourcePage answers the same call)."""
        return flatten_leads(self, leads)


def normalise_page(
    source: ImageSource, size: tuple[int, int] = DEFAULT_SIZE, *, suppress_grid: bool = True
) -> NormalisedPage:
    """Decode ``source`` and return its lead area at ``size`` = (height, width).

    Each lead row's baseline lands on the centre of its canonical row, also on printouts that
    shift rows apart to make room for tall complexes.
    """
    height, width = size
    grey, source_size = load_image_and_size(source, min_side=max(width, height))
    if min(source_size) < MIN_PAGE_SIDE:
        raise ImageReadError(source_name(source), f"{source_size[0]}x{source_size[1]} px is too small for an "
                             "ECG page", f"use a scan at least {MIN_PAGE_SIDE} px on each side")
    ink = _ink_strength(grey)
    geometry = _locate(ink)
    # Array index of each output row and column (pixel centres sit at index + 0.5).
    ys = _frame_y(geometry, np.arange(height) + 0.5, height) - 0.5
    xs = _frame_x(geometry, np.arange(width) + 0.5, width) - 0.5
    step_x = (geometry.area[2] - geometry.area[0]) / width
    step_y = (geometry.area[3] - geometry.area[1]) / height
    if step_x > 1.5 or step_y > 1.5:
        # Shrinking a lot: smooth first so thin traces average into grey rather than vanish.
        ink = ndimage.uniform_filter(ink, size=(max(1, round(step_y)), max(1, round(step_x))))
    image = _resample(ink, geometry, ys, xs)  # ink strength; turned into paper = 1 in place below
    if suppress_grid:
        image -= _GRID_FLOOR
        image *= 1.0 / (1.0 - _GRID_FLOOR)
        np.clip(image, 0.0, 1.0, out=image)
    np.subtract(1.0, image, out=image)
    boxes = canonical_boxes(geometry.layout, geometry.rhythm, size)
    factor = (source_size[0] / grey.shape[1], source_size[1] / grey.shape[0])
    source_boxes = _to_source_boxes(boxes, geometry, size, factor, source_size)
    warnings = []
    if geometry.method != "projection":
        warnings.append("no lead rows found; lead panels are fixed fractions of the inked area")
    return NormalisedPage(image=image, lead_boxes=boxes, source_boxes=source_boxes, layout=geometry.layout,
                          rhythm=geometry.rhythm, method=geometry.method, skew_deg=geometry.skew_deg,
                          source_size=source_size, warnings=warnings, grid=geometry.grid,
                          px_per_mv=_pulse_rows_out(geometry, height), pixel_aspect=_pixel_aspect(geometry, size))


def canonical_boxes(layout: str, rhythm: bool, size: tuple[int, int] = DEFAULT_SIZE) -> dict[str, Box]:
    """Lead panels of a normalised page: equal rows, equal columns, in :data:`LEADS` order."""
    height, width = size
    grid = _GRIDS[layout]
    n_rows = len(grid) + int(rhythm)
    row_h, col_w = height / n_rows, width / len(grid[0])
    boxes = {}
    for r, leads in enumerate(grid):
        for c, lead in enumerate(leads):
            boxes[lead] = (c * col_w, r * row_h, (c + 1) * col_w, (r + 1) * row_h)
    ordered = {lead: boxes[lead] for lead in LEADS}
    if rhythm:
        ordered[RHYTHM] = (0.0, len(grid) * row_h, float(width), float(height))
    return ordered


def mask_outside_leads(image: np.ndarray, page: NormalisedPage, paper: float | None = None) -> np.ndarray:
    """A copy of the decoded page ``image`` with everything outside the lead area painted paper.

    For paths that show or perturb the whole page (overlays, LIME): the header, footer and any
    printed diagnosis are gone, as they are from :func:`normalise_page`'s output. ``page`` is
    that page's :class:`NormalisedPage`; ``image`` may be at any scale of the source.
    """
    height, width = image.shape[:2]
    sx, sy = width / page.source_size[0], height / page.source_size[1]
    boxes = np.array(list(page.source_boxes.values()))
    x0, y0 = int(np.floor(boxes[:, 0].min() * sx)), int(np.floor(boxes[:, 1].min() * sy))
    x1, y1 = int(np.ceil(boxes[:, 2].max() * sx)), int(np.ceil(boxes[:, 3].max() * sy))
    fill = np.max(image) if paper is None else paper
    masked = np.full_like(image, fill)
    masked[max(0, y0):y1, max(0, x0):x1] = image[max(0, y0):y1, max(0, x0):x1]
    return masked


def flatten_leads(page: NormalisedPage, leads) -> NormalisedPage:
    """A copy of ``page`` in which each panel named in ``leads`` shows a flat line at its baseline.

    A flat trace is the neutral lead: it carries no rhythm and no morphology but is still read
    as a lead (a blank panel would read as a missing one). Explanations switch leads off this way.
    Baselines sit mid-row on a normalised page; the line is as thick as a trace at this size.
    """
    image = page.image.copy()
    thickness = max(1, round(image.shape[0] / DEFAULT_SIZE[0]))
    for name in leads:
        x0, y0, x1, y1 = (int(round(v)) for v in page.lead_boxes[name])
        image[y0:y1, x0:x1] = 1.0
        middle = (y0 + y1 - thickness) // 2
        image[middle:middle + thickness, x0:x1] = 0.0
    return replace(page, image=image)


def lead_tiles(page: NormalisedPage, tile: tuple[int, int] = (32, 64)) -> np.ndarray:
    """Each of the 12 leads (and the rhythm strip when present) resampled to ``tile`` = (h, w).

    The result is (n, h, w) in :data:`LEADS` order, so a feature or a model sees lead V2 in the
    same place whether the page was printed 3x4 or 6x2.
    """
    names = list(LEADS) + ([RHYTHM] if page.rhythm else [])
    first = page.lead_boxes[LEADS[0]]
    # Box-average once for the whole page (panels share one size) so thin traces survive.
    fy = max(1, round((first[3] - first[1]) / tile[0]))
    fx = max(1, round((first[2] - first[0]) / tile[1]))
    smooth = ndimage.uniform_filter(page.image, size=(fy, fx)) if fy > 1 or fx > 1 else page.image
    return np.stack([_sample_box(smooth, page.lead_boxes[name], tile) for name in names])


GRIDS = _GRIDS  # per layout, the leads of each row of panels, left to right


def ink_strength(grey: np.ndarray) -> np.ndarray:
    """0 on paper, 1 on the darkest ink (a new float32 array)."""
    return _ink_strength(grey)


def resample_frame(ink: np.ndarray, geometry: PageGeometry, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``ink`` at the deskewed frame's rows ``ys`` x columns ``xs`` (array indices)."""
    return _resample(ink, geometry, np.asarray(ys, dtype=float), np.asarray(xs, dtype=float))


def locate_leads(grey: np.ndarray) -> PageGeometry:
    """Find the skew, the rows of traces and the lead area on a decoded greyscale page."""
    return _locate(_ink_strength(grey))


def _locate(strength: np.ndarray) -> PageGeometry:
    h, w = strength.shape
    slope = _estimate_slope(strength)
    centre = (w / 2.0, h / 2.0)
    level_strength = _deskew(strength, slope, centre)
    level = level_strength > _INK_LEVEL
    pulses, pulse_height = _calibration_pulses(level_strength)
    rows = _choose_rows(pulses, lambda: _trace_rows(_drop_long_lines(level)))
    if len(rows) not in _LAYOUT_BY_ROWS:
        # Some scans print the grid dark enough to pass as ink; then ruled-line removal takes the
        # flat baselines lying along grid lines with it. Only the darkest ink is trace there.
        level = level_strength > _DARK_INK_LEVEL
        rows = _choose_rows(pulses, lambda: _trace_rows(_drop_long_lines(level)))
        level = _dilate(level, 5, axis=1)  # bridge the faint stretches of trace this level misses
    layout = _LAYOUT_BY_ROWS.get(len(rows))
    if layout is not None:
        pitch = float(np.median(np.diff(rows)))
        top, bottom = max(0.0, rows[0] - pitch / 2), min(float(h), rows[-1] + pitch / 2)
        span = _trace_span(level, rows, pitch)
        if span is not None:
            baselines = tuple(float(r) + 0.5 for r in rows)  # pixel centres, like the area's edges
            area = (span[0], top, span[1], bottom)
            # Brackets off the rows the page was cut by are not the pulses of these leads.
            on_rows = len(pulses) > 0 and all(np.abs(rows - p).min() <= 0.25 * pitch for p in pulses)
            return PageGeometry(layout[0], layout[1], area, slope, centre, "projection", baselines,
                                _has_grid(level_strength, area), pulse_height if on_rows else 0.0)
    area = _inked_area(level)
    return PageGeometry("3x4", True, area, slope, centre, "fixed-fraction", grid=_has_grid(level_strength, area))


# --- steps ----------------------------------------------------------------------------------

# Share of the lead area that is faint ink (grid lines, paper texture): 0.02-0.04 on blank paper
# and 0.13-0.36 on graph paper, on real EDAN pages and synthetic ones alike.
_FAINT = (0.04, 0.3)
_GRID_SHARE = 0.08


def _has_grid(strength: np.ndarray, area: Box) -> bool:
    x0, y0, x1, y1 = (int(round(v)) for v in area)
    inside = strength[max(0, y0):y1:2, max(0, x0):x1:2]
    if inside.size == 0:
        return False
    faint = (inside > _FAINT[0]) & (inside < _FAINT[1])
    return bool(faint.mean() > _GRID_SHARE)


def _ink_strength(grey: np.ndarray) -> np.ndarray:
    """0 on paper, 1 on the darkest ink: contrast stretch that ignores how grey the paper is."""
    dark, paper = _percentiles(grey[::2, ::2], (0.5, 90.0))
    strength = np.subtract(paper, grey, dtype=np.float32)  # in place from here: this runs on every pixel
    strength *= np.float32(1.0 / max(paper - dark, 0.1))
    return np.clip(strength, 0.0, 1.0, out=strength)


def _percentiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, qs)`` (linear) of values in [0, 1], read off a 256-level histogram.

    Exact for 8-bit pages, where every value is k/255; within 1/510 for deeper ones. A histogram
    is one pass, where a partial sort is several.
    """
    levels = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    cdf = np.cumsum(np.bincount(levels.ravel(), minlength=256))
    n = int(cdf[-1])
    out = []
    for q in qs:
        position = q / 100.0 * (n - 1)
        low = int(position)
        # The k-th smallest value (from 0) is the first level whose cumulative count exceeds k.
        a, b = np.searchsorted(cdf, [low, min(low + 1, n - 1)], side="right") / 255.0
        out.append(float(a + (b - a) * (position - low)))
    return out


def _estimate_slope(strength: np.ndarray) -> float:
    """dy/dx of the page's horizontal structure, from the shift between left and right profiles."""
    h, w = strength.shape

    def profile(x0: float, x1: float) -> np.ndarray:  # share of inked pixels per row
        part = strength[:, int(x0 * w):int(x1 * w)]
        return np.count_nonzero(part > _INK_LEVEL, axis=1) / max(part.shape[1], 1)

    left, right = profile(0.1, 0.4), profile(0.6, 0.9)
    dx = 0.5 * w
    max_shift = max(1, int(np.ceil(_MAX_SKEW * dx)))
    left, right = left - left.mean(), right - right.mean()
    shifts = np.arange(-max_shift, max_shift + 1)
    scores = np.array([np.dot(left[max(0, -s):h - max(0, s)], right[max(0, s):h - max(0, -s)]) for s in shifts])
    best = int(np.argmax(scores))
    if scores[best] <= 0:
        return 0.0
    shift = float(shifts[best])
    if 0 < best < len(scores) - 1:  # parabolic refinement to a fraction of a pixel
        a, b, c = scores[best - 1], scores[best], scores[best + 1]
        denom = a - 2 * b + c
        if denom < 0:
            shift += 0.5 * (a - c) / denom
    return shift / dx


def _drop_long_lines(ink: np.ndarray) -> np.ndarray:
    """Remove ruled lines (header rules, frame, column separators) that are not traces."""
    h, w = ink.shape
    lines = _runs_at_least(_dilate(ink, 3, axis=1), max(8, int(0.4 * h)), axis=0)
    # Thick across the line: a double rule, stepped by the deskew, is one line.
    lines |= _runs_at_least(_dilate(ink, 5, axis=0), max(8, int(0.12 * w)), axis=1)
    return ink & ~lines


def _dilate(mask: np.ndarray, size: int, axis: int) -> np.ndarray:
    """``maximum_filter1d(mask, size, axis)`` for a small odd size, from shifted ORs (~10x faster)."""
    out = mask.copy()
    for shift in range(1, size // 2 + 1):
        ahead = [slice(None)] * 2
        behind = [slice(None)] * 2
        ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
        out[tuple(behind)] |= mask[tuple(ahead)]
        out[tuple(ahead)] |= mask[tuple(behind)]
    return out


def _runs_at_least(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """The pixels of ``mask`` that lie on a run of at least ``length`` along ``axis``."""
    along = mask if axis == 0 else mask.T
    # Only a column with that much ink in all can hold such a run: few do, so look at those only.
    candidates = np.flatnonzero(np.count_nonzero(along, axis=0) >= length)
    column, start, stop = _column_runs(along[:, candidates])
    column = candidates[column]
    long = stop - start >= length
    lengths = (stop - start)[long]
    # Every pixel of every long run (few: the frame and rules), as (row, column) pairs.
    rows = np.repeat(start[long] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    painted = np.zeros(along.shape, dtype=bool)
    painted[rows, np.repeat(column[long], lengths)] = True
    return painted if axis == 0 else painted.T


def _column_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(column, start, stop) of every vertical run of True in ``mask``, ``stop`` exclusive."""
    n = mask.shape[0] + 1
    padded = np.zeros((mask.shape[1], n + 1), dtype=np.int8)  # one padded column per array row
    padded[:, 1:-1] = mask.T
    edges = np.flatnonzero(np.diff(padded, axis=1))  # within a column, starts and stops alternate
    column, start = np.divmod(edges[::2], n)
    return column, start, edges[1::2] - column * n


def _deskew(image: np.ndarray, slope: float, centre: tuple[float, float]) -> np.ndarray:
    """Rotate (nearest pixel) so that the page's rows and columns line up with the array's.

    Both matter: rows for the projections, columns so that the frame stays one long vertical
    line and the calibration pulses share one column. The mapping is :func:`_frame_to_source`'s,
    run by Pillow's affine transform (C, ~10x faster than a numpy gather).
    """
    h, w = image.shape
    if abs(slope) * max(h, w) < 1.0:
        return image
    angle, (cx, cy) = np.arctan(slope), centre
    cos, sin = np.cos(angle), np.sin(angle)
    # Output (x, y) reads source (cos x - sin y + c, sin x + cos y + f): a rotation about the centre.
    coefficients = (cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos)
    rotated = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).transform(
        (w, h), Image.Transform.AFFINE, coefficients, Image.Resampling.NEAREST, fillcolor=0)
    return np.asarray(rotated)


def _calibration_pulses(strength: np.ndarray) -> tuple[np.ndarray, float]:
    """Baselines from the calibration pulses printed at the start of every lead row, and their height.

    Every pulse is the same 1 mV step at the same distance from the left edge, so the pulses
    are the largest set of brackets near the left that share one height and one column; their
    feet sit exactly on the rows' baselines. Returns no rows and height 0 when no such set exists.
    """
    h, w = strength.shape
    # Pairs of columns: a thin stroke drawn across a pixel boundary is faint in each column of a
    # shrunken page, but whole in their sum.
    near_edge = strength[:, :max(8, int(0.15 * w))]
    left = (near_edge[:, :-1] + near_edge[:, 1:]) > _INK_LEVEL
    pulses = _brackets(left, _vertical_strokes(left, 0.02 * h, 0.15 * h), max_width=max(4, 0.05 * w))
    best: list[int] = []
    best_unevenness, best_heights = np.inf, []
    for x, length in sorted({(x, length) for x, length, _, _ in pulses}):  # each candidate column once
        chosen = [(f, height) for px, pl, f, height in pulses
                  if abs(px - x) <= 2 and abs(pl - length) <= 0.15 * length + 1]
        rows = _merge_close(sorted({f for f, _ in chosen}), max(3, int(0.03 * h)))
        # The most rows wins; between equal counts, the most evenly spaced (printouts mostly are).
        gaps = sorted(b - a for a, b in zip(rows, rows[1:]))
        unevenness = (gaps[-1] - gaps[0]) / max(gaps[len(gaps) // 2], 1) if gaps else np.inf
        if len(rows) > len(best) or (len(rows) == len(best) and unevenness < best_unevenness):
            best, best_unevenness, best_heights = rows, unevenness, [height for _, height in chosen]
    if len(best) < 3:
        return np.array([], dtype=float), 0.0
    return np.array(best, dtype=float), float(np.median(best_heights))


def _vertical_strokes(mask: np.ndarray, min_length: float, max_length: float) -> np.ndarray:
    """(column, start, stop) of every vertical run of ink within the length bounds.

    Runs touching the top or bottom edge are page borders, not pulses.
    """
    column, start, stop = _column_runs(mask)
    length = stop - start
    keep = (length >= min_length) & (length <= max_length) & (start > 0) & (stop < mask.shape[0])
    return np.column_stack([column, start, stop])[keep]


def _brackets(mask: np.ndarray, strokes: np.ndarray, max_width: float) -> list[tuple[int, int, int, float]]:
    """(column, length, foot, height) of the strokes that are the left leg of a calibration pulse.

    A pulse is a bracket (up, across, down) on blank paper: two strokes of one height on one
    foot, joined across the top, hollow below, with no trace running in from the left. A QRS
    spike is solid or has its baseline to its left; a dashed frame line has no second leg.
    ``length`` is the leg's ink from the top of the bar to the bottom of the foot; ``height``
    leaves out one stroke's thickness, so it runs from centre to centre, as a trace is read.
    """
    if len(strokes) == 0:
        return []
    x, start, stop = strokes.T
    candidates = ((x[None, :] - x[:, None] >= 2) & (x[None, :] - x[:, None] <= max_width)
                  & (np.abs(start[None, :] - start[:, None]) <= 2) & (np.abs(stop[None, :] - stop[:, None]) <= 2))
    pulses = []
    for i in np.flatnonzero(candidates.any(axis=1)):
        xi, si, ei = int(x[i]), int(start[i]), int(stop[i])
        if xi and mask[max(0, ei - 3):ei + 2, :xi].any(axis=0).mean() > 0.3:
            continue
        for j in np.flatnonzero(candidates[i]):
            xj = int(x[j])
            top, foot = min(si, int(start[j])), max(ei, int(stop[j]))
            joined = mask[top:top + 3, xi:xj + 1].any(axis=0).all()
            hollow = not mask[top + 3:foot - 3, xi + 1:xj].any(axis=0).all()
            if joined and hollow:
                pulses.append((xi, ei - si, ei - 1, ei - si - _bar_thickness(mask[top:foot, xi + 1:xj])))
                break
    return pulses


def _bar_thickness(inside: np.ndarray) -> float:
    """Rows of ink in the bar across the top of a bracket (``inside`` spans it between the legs).

    Columns inked from top to bottom are a leg's edge, not the bar: they are left out.
    """
    bar = inside[: max(3, len(inside) // 3)]
    rows = np.count_nonzero(bar, axis=0)
    rows = rows[(rows > 0) & (rows < len(bar))]
    return float(np.median(rows)) if len(rows) else 0.0


def _choose_rows(pulses: np.ndarray, trace_rows) -> np.ndarray:
    """Baselines from the calibration pulses, checked against the rows of traces where needed.

    The pulses mark the baselines exactly, also where a printer moved rows apart to make room
    for tall complexes. Without them, rows come from evenly spaced traces; and when the traces
    show one more row than the pulses at every pulse (a rhythm strip whose pulse went unseen),
    the traces win.
    """
    pulses_fit = len(pulses) in _LAYOUT_BY_ROWS and _evenly_spaced(pulses, 0.4, 2.0)
    if pulses_fit and len(pulses) + 1 not in _LAYOUT_BY_ROWS:
        return pulses
    traces = trace_rows()
    if not pulses_fit:
        return traces
    if len(traces) == len(pulses) + 1:
        pitch = float(np.median(np.diff(traces)))
        if all(np.abs(traces - p).min() <= 0.25 * pitch for p in pulses):
            return traces
    return pulses


def _evenly_spaced(rows: np.ndarray, low: float, high: float) -> bool:
    """Whether every gap between rows lies within [low, high] times the median gap."""
    gaps = np.diff(rows)
    return len(gaps) > 0 and low * np.median(gaps) <= gaps.min() and gaps.max() <= high * np.median(gaps)


def _merge_close(values: list[int], gap: int) -> list[int]:
    merged: list[list[int]] = []
    for v in values:
        if merged and v - merged[-1][-1] <= gap:
            merged[-1].append(v)
        else:
            merged.append([v])
    return [group[len(group) // 2] for group in merged]  # values arrive sorted: the (upper) median


def _trace_rows(mask: np.ndarray) -> np.ndarray:
    """Baselines of the rows of traces.

    A trace spends most of its time on its baseline, so the horizontal projection of ink peaks
    there even when tall QRS complexes reach into the next row. A candidate is kept when most
    columns near it hold exactly one stretch of ink, as a trace drawn across the page does;
    text (several strokes per column, gaps between words) does not. The rows that remain must
    be evenly spaced, as lead rows on a printout are.
    """
    h, w = mask.shape
    profile = ndimage.uniform_filter1d(mask.sum(axis=1).astype(np.float32), max(3, int(0.02 * h)))
    peaks = [y for y in range(1, h - 1) if profile[y] >= profile[y - 1] and profile[y] > profile[y + 1]]
    strong = [y for y in peaks if profile[y] >= 0.15 * profile.max()]
    rows = np.array(_non_max_suppress(strong, profile, min_gap=max(4, int(0.04 * h))), dtype=int)
    if len(rows) < 2:
        return np.array([], dtype=float)
    gaps = np.diff(rows)
    nearest = np.minimum(np.r_[gaps[0], gaps], np.r_[gaps, gaps[-1]])
    reach = np.clip((0.45 * nearest).astype(int), 2, int(0.1 * h))
    score = _single_stroke_share(mask, rows, reach)
    surely_traces = rows[score >= 0.75]
    if len(surely_traces) < 2:
        return _fit_comb(rows[score >= 0.4], h)
    pitch = int(np.median(np.diff(surely_traces)))
    pulse = np.array([_has_calibration_pulse(mask, y, pitch) for y in rows])
    with_pulse = rows[pulse & (score >= 0.25)]
    if len(with_pulse) >= 3:  # printouts with pulses: text lines never have one
        return _fit_comb(with_pulse, h)
    return _fit_comb(rows[score >= 0.4], h)


def _has_calibration_pulse(mask: np.ndarray, baseline: int, pitch: int) -> bool:
    """Whether a 1 mV calibration step rises from ``baseline`` near the left edge of the page.

    The pulse is a vertical stroke between a fifth and three quarters of the row pitch tall whose
    foot sits on the baseline; header text is too short and never stands on a trace baseline.
    """
    h, w = mask.shape
    top, bottom = max(0, baseline - int(0.8 * pitch)), min(h, baseline + max(2, int(0.1 * pitch)) + 1)
    _, start, stop = _column_runs(mask[top:bottom, : max(4, int(0.1 * w))])
    length, foot = stop - start, top + stop - 1
    return bool(np.any((length >= 0.2 * pitch) & (length <= 0.75 * pitch)
                       & (np.abs(foot - baseline) <= max(2, 0.1 * pitch))))


def _single_stroke_share(mask: np.ndarray, rows: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """For each row, the share of columns whose band holds exactly one vertical run of ink.

    A row whose ink never rises or falls more than a few pixels is a ruled line, not a trace
    (every trace has QRS complexes), and scores 0.
    """
    starts = mask & ~np.vstack([np.zeros((1, mask.shape[1]), bool), mask[:-1]])
    shares = []
    for y, r in zip(rows, reach):
        top, bottom = max(0, y - r), min(mask.shape[0], y + r + 1)
        band = mask[top:bottom]
        runs = starts[top + 1:bottom].sum(axis=0) + mask[top]
        inked = band.any(axis=0)
        if not inked.any():
            shares.append(0.0)
            continue
        lowest = len(band) - 1 - band[::-1].argmax(axis=0)  # last and first inked row per column
        highest = band.argmax(axis=0)
        extent = np.sort((lowest - highest)[inked])
        position = 0.99 * (len(extent) - 1)  # np.percentile(extent, 99), without its overhead
        low = int(position)
        p99 = extent[low] + (extent[min(low + 1, len(extent) - 1)] - extent[low]) * (position - low)
        flat = p99 < max(4, 0.01 * mask.shape[0])
        shares.append(0.0 if flat else float(np.mean(runs == 1)))
    return np.array(shares)


def _non_max_suppress(peaks: list[int], score: np.ndarray, min_gap: int) -> list[int]:
    kept: list[int] = []
    for y in sorted(peaks, key=lambda p: -score[p]):
        if all(abs(y - k) >= min_gap for k in kept):
            kept.append(y)
    return sorted(kept)


def _fit_comb(rows: np.ndarray, h: int) -> np.ndarray:
    """Evenly spaced baselines that explain the most candidate rows.

    Peaks wander a few pixels from the true baseline when a lead has tall waves, so the rows are
    taken from the best comb (pitch and phase) rather than from the peaks themselves. A comb
    tooth with no candidate (a faint lead) still counts as a row, at a cost, so that a pitch
    half the true one never wins. All pitches are scored at once.
    """
    rows = np.sort(np.asarray(rows, dtype=float))
    if len(rows) < 3:
        return np.array([], dtype=float)
    pitches = np.arange(max(4.0, 0.06 * h), 0.3 * h, 0.5)[:, None]
    phases = np.angle(np.exp(2j * np.pi * rows / pitches).mean(axis=1, keepdims=True)) / (2 * np.pi) * pitches
    k = np.rint((rows - phases) / pitches).astype(int)  # (pitch, row): the tooth each row is nearest
    inliers = np.abs(rows - phases - k * pitches) <= 0.2 * pitches
    # Rows are sorted, so each pitch's teeth never decrease along a row of k: count the changes.
    big = np.iinfo(int).max
    first = np.where(inliers, k, big).min(axis=1)
    last = np.where(inliers, k, -big).max(axis=1)
    previous = np.maximum.accumulate(np.where(inliers, k, -big), axis=1)
    new_tooth = inliers & (k != np.c_[np.full(len(k), -big), previous[:, :-1]])
    teeth = new_tooth.sum(axis=1)
    score = np.where(teeth >= 3, teeth - 1.5 * (last - first + 1 - teeth), -np.inf)
    if not np.isfinite(score).any():
        return np.array([], dtype=float)
    best = len(score) - 1 - int(np.argmax(score[::-1]))  # ties go to the larger pitch
    k_best, observed = k[best][inliers[best]], rows[inliers[best]]
    slope, intercept = np.polyfit(k_best, observed, 1) if len(np.unique(k_best)) > 1 else (0.0, observed.mean())
    return intercept + slope * np.arange(k_best.min(), k_best.max() + 1)


def _trace_span(mask: np.ndarray, rows: np.ndarray, pitch: float) -> tuple[float, float] | None:
    """Median start and end of the traces over the rows, leaving out calibration pulses."""
    h, w = mask.shape
    min_run = max(4, int(0.05 * w))
    starts, ends = [], []
    for y in rows:
        band = mask[max(0, int(y - 0.45 * pitch)):min(h, int(y + 0.45 * pitch) + 1)]
        runs = _runs(band.any(axis=0))  # the calibration pulse is a short run of its own
        long_runs = [(a, b) for a, b in runs if b - a >= min_run]
        if long_runs:
            starts.append(long_runs[0][0])
            ends.append(long_runs[-1][1])
    if not starts:
        return None
    x0, x1 = float(np.median(starts)), float(np.median(ends))
    return (x0, x1) if x1 - x0 >= 0.3 * w else None


def _runs(present: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], present, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _inked_area(mask: np.ndarray) -> Box:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    if len(xs) < 50:
        return (0.0, 0.0, float(w), float(h))
    x0, x1 = np.percentile(xs, [0.5, 99.5])
    y0, y1 = np.percentile(ys, [0.5, 99.5])
    return (float(x0), float(y0), float(x1), float(y1))


def _pulse_rows_out(geometry: PageGeometry, height: int) -> float:
    """Output rows spanned by the calibration pulse (0.0 when none): median over the lead rows.

    Rows are stretched piecewise between baselines, so the pulse is mapped where it stands:
    from each baseline up by its height on the page.
    """
    if geometry.pulse_height <= 0 or not geometry.baselines:
        return 0.0
    feet = np.asarray(geometry.baselines)
    frame_y = np.r_[feet, feet - geometry.pulse_height]
    out_y = _out_y(geometry, frame_y, height)
    return float(np.median(out_y[:len(feet)] - out_y[len(feet):]))


def _pixel_aspect(geometry: PageGeometry, size: tuple[int, int]) -> float:
    """Output rows per output column for one length of paper, from the lead area's two scales."""
    (x0, y0, x1, y1), (height, width) = geometry.area, size
    if x1 <= x0 or y1 <= y0:
        return 1.0
    return (height / (y1 - y0)) / (width / (x1 - x0))


def _out_y(geometry: PageGeometry, frame_y: np.ndarray, height: int) -> np.ndarray:
    """Output rows of deskewed-frame rows: the inverse of :func:`_frame_y`."""
    grid = np.arange(height + 1, dtype=float)
    return np.interp(frame_y, _frame_y(geometry, grid, height), grid)


def _frame_x(geometry: PageGeometry, x_out: np.ndarray, width: int) -> np.ndarray:
    """Deskewed-frame x of output columns: the lead area's span stretched evenly."""
    return geometry.area[0] + np.asarray(x_out, dtype=float) * (geometry.area[2] - geometry.area[0]) / width


def _frame_y(geometry: PageGeometry, y_out: np.ndarray, height: int) -> np.ndarray:
    """Deskewed-frame y of output rows: piecewise linear so each baseline lands mid-row."""
    top, bottom = geometry.area[1], geometry.area[3]
    n = len(geometry.baselines)
    if n == 0:
        return top + np.asarray(y_out, dtype=float) * (bottom - top) / height
    out_knots = np.r_[0.0, (np.arange(n) + 0.5) * height / n, float(height)]
    frame_knots = np.r_[top, geometry.baselines, bottom]
    return np.interp(y_out, out_knots, frame_knots)


def _resample(ink: np.ndarray, geometry: PageGeometry, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``ink`` at frame rows ``ys`` x columns ``xs`` (array indices).

    Two 1D passes (rows, then columns) also on a tilted page: the first pass reads, for every
    output row and every source column, the point where that output row crosses the column; the
    second reads along each output row. The coordinates are those of the exact rotation
    (:func:`_frame_to_source`); each is a sum of a per-row and a per-column term, so the 2D
    coordinate arrays cost one float32 addition each.
    """
    if abs(geometry.slope) * ink.shape[1] < 0.5:  # no visible skew: the passes need no shear
        return _interp_cols(_interp_rows(ink, ys), xs)
    angle, (cx, cy) = np.arctan(geometry.slope), geometry.centre
    cos, sin = np.cos(angle), np.sin(angle)
    rows = ys + 0.5 - cy  # frame y of the output rows, about the centre
    columns = np.arange(ink.shape[1]) + 0.5 - cx
    # Where output row r crosses source column c: y = cy + c tan + r / cos (index = y - 0.5).
    y_crossing = _outer_sum(cy - 0.5 + rows / cos, columns * np.tan(angle))
    crossing = _interp_rows(ink, y_crossing)
    # Along output row r, frame x X sits at source x = cx + X cos - r sin.
    x_source = _outer_sum(-rows * sin, cx - 0.5 + (xs + 0.5 - cx) * cos)
    return _interp_cols(crossing, x_source)


def _outer_sum(per_row: np.ndarray, per_column: np.ndarray) -> np.ndarray:
    return np.add.outer(per_row.astype(np.float32), per_column.astype(np.float32))


def _interp_rows(array: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``array`` read at row ``ys[i]`` (or ``ys[i, c]`` in column c), linearly between rows."""
    low, frac = _neighbours(ys, array.shape[0])
    if ys.ndim == 1:
        return _lerp(array[low], array[low + 1], frac[:, None])
    flat, width = array.ravel(), array.shape[1]
    index = low * width + np.arange(width, dtype=low.dtype)  # take() on flat indices is the fast gather
    above = flat.take(index)
    index += width
    return _lerp(above, flat.take(index), frac)


def _interp_cols(array: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``array`` read at column ``xs[j]`` (or ``xs[i, j]`` in row i), linearly between columns."""
    low, frac = _neighbours(xs, array.shape[1])
    if xs.ndim == 1:
        return _lerp(array.take(low, axis=1), array.take(low + 1, axis=1), frac)
    flat = array.ravel()
    index = low + (np.arange(array.shape[0], dtype=low.dtype) * array.shape[1])[:, None]
    left = flat.take(index)
    index += 1
    return _lerp(left, flat.take(index), frac)


def _lerp(low: np.ndarray, high: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """``low + (high - low) * frac``, computed in the two arrays given (both are overwritten).

    In place on purpose: every new page-sized array costs page faults, which dominate on VMs.
    """
    high -= low
    high *= frac
    low += high
    return low


def _neighbours(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the lower neighbour (the upper one is +1) and the float32 weight of the upper one."""
    if n < 2:
        return np.zeros(coords.shape, dtype=np.int32), np.zeros(coords.shape, dtype=np.float32)
    coords = np.clip(coords, 0.0, n - 1.0).astype(np.float32, copy=False)  # beyond the edge: the edge pixel
    low = coords.astype(np.int32)  # truncation is floor here: coords >= 0
    np.minimum(low, n - 2, out=low)
    return low, np.subtract(coords, low, dtype=np.float32)  # int32 - float32 would be float64


def _to_source_boxes(boxes: dict[str, Box], geometry: PageGeometry, size: tuple[int, int], factor,
                     page_size) -> dict[str, Box]:
    """Boxes of the normalised page as axis-aligned hulls of their corners on the source page."""
    height, width = size
    corners = np.array([[(b[0], b[1]), (b[2], b[1]), (b[0], b[3]), (b[2], b[3])] for b in boxes.values()],
                       dtype=float).reshape(-1, 2)
    frame = np.column_stack([_frame_x(geometry, corners[:, 0], width), _frame_y(geometry, corners[:, 1], height)])
    source = (geometry.to_source(frame) * np.array(factor)).reshape(-1, 4, 2)
    low = np.clip(source.min(axis=1), 0, page_size)
    high = np.clip(source.max(axis=1), 0, page_size)
    return {name: (float(low[i, 0]), float(low[i, 1]), float(high[i, 0]), float(high[i, 1]))
            for i, name in enumerate(boxes)}


def _sample_box(image: np.ndarray, box: Box, tile: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    th, tw = tile
    ys = y0 + (np.arange(th) + 0.5) * (y1 - y0) / th - 0.5
    xs = x0 + (np.arange(tw) + 0.5) * (x1 - x0) / tw - 0.5
    return ndimage.map_coordinates(image, np.meshgrid(ys, xs, indexing="ij"), order=1, mode="nearest").astype(np.float32)
