"""Hand-crafted feature sets of a normalised ECG page: what each set computes, and their registry.

Each set is a function of a :class:`~features.pages.NormalisedPage` returning a 1-D float32
vector whose length never depends on the page: a blank page, a tiny image or a 6x2 printout give
the same length as a full 3x4 page, with 0 wherever a value is undefined, never NaN. Sets are
registered in :data:`FEATURE_SETS` with a version; bump the version whenever a set's output
changes, because cached rows are keyed by it.

* ``hog_page``: HOG of the whole lead area shrunk to 160x256 (shape of the waves, page-wide).
* ``hog_leads``: HOG of each of the 12 leads resampled to 32x64, in :data:`~features.pages.LEADS`
  order whatever the layout.
* ``lbp``: uniform LBP histograms (P=8, R=1, 10 bins) per lead: texture of the trace.
* ``trace``: a 1-D trace per lead, read off the page, and measures a cardiologist would look at
  (amplitude, baseline, ST level, Q depth), plus rate and RR regularity from the rhythm strip.
  Everything is in fractions of a lead box or of the page width, so page size does not matter.
* ``signals``: the same measures and more in physical units (R amplitude, QRS width, ST level,
  Q depth and T wave per lead in mV and ms; RR, its variation, rate and the widest QRS), from
  :func:`features.traces.lead_signals` on the page normalised at 640x1024, where the traces
  are read more faithfully (:mod:`features.measures`).
* ``source_signals``: the ``signals`` measures from the leads read at the source's resolution
  (:mod:`features.source_traces`).
* ``median_beat``: each lead's median beat (QRS-aligned, -250..+450 ms at 50 Hz, against its PR
  segment) read at the source's resolution (:mod:`features.median_beat`).
* ``rhythm``: rate, RR variation, RMSSD, pNN50, premature beats and the longest pause over the
  10 s rhythm strip read at the source's resolution (:mod:`features.rhythm`).
* ``embed``: the pretrained lead-mosaic backbone's embedding (:mod:`features.embed`); needs
  ``smartecg pretrain`` once, and the transformer then carries that backbone.

A set may declare the page size it reads (``FeatureSet.size``); the others read the page at
the transformer's working size. Sets of size :data:`~features.source_traces.SOURCE_RESOLUTION`
take a :class:`~features.source_traces.SourcePage` instead of a normalised page.

:class:`features.handcrafted.PageFeatures` turns paths, bytes or arrays into a feature matrix,
with caching and parallelism delegated to :mod:`features.extract`. This module needs no
scikit-learn, so an export's light runtime (:mod:`automl.export`) computes the sets with it.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np

from features.embed import Embedding
from features.pages import DEFAULT_SIZE, LEADS, RHYTHM, NormalisedPage, canonical_boxes, lead_tiles
from features.measures import measure_names, measures_of, signal_measures
from features.median_beat import median_beat_names, median_beats
from features.peaks import find_peaks
from features.rhythm import RHYTHM_MEASURES, rhythm_measures
from features.source_traces import SOURCE_RESOLUTION, SourcePage, blank_source_page
from features.traces import SECONDS_ACROSS, SIGNAL_SIZE, Traces, label_skip, read_traces

__all__ = ["FEATURE_SETS", "FeatureSet", "blank_page", "feature_length", "feature_names", "hog", "set_length"]


class FeatureSet(NamedTuple):
    """A registered feature set: bump ``version`` whenever ``function``'s output changes.

    ``size`` is the (height, width) the page is normalised at for this set; None reads it at
    the transformer's ``size``.
    """

    version: int
    function: Callable[[NormalisedPage], np.ndarray]
    size: tuple[int, int] | None = None


# --- hog_page, hog_leads, lbp -----------------------------------------------------------------

_PAGE_SHAPE = (160, 256)  # half the default working size: 10x16 HOG cells of 16 px
_TILE = (32, 64)
_LBP_BINS = 10  # uniform LBP with P=8: codes 0..8 for uniform patterns, 9 for all others


def hog_page(page: NormalisedPage) -> np.ndarray:
    """HOG (9 orientations, 16 px cells, 2x2 blocks) of the lead area shrunk to 160x256."""
    return hog(_shrink(page.image, _PAGE_SHAPE), cell=(16, 16), block=(2, 2))


def hog_leads(page: NormalisedPage) -> np.ndarray:
    """HOG (9 orientations, 8 px cells, per-cell normalisation) of the 12 lead tiles.

    The tiles are stacked into one tall mosaic for a single ``hog`` call; with 1x1 blocks and
    tiles a whole number of cells high, no cell straddles two leads.
    """
    return hog(_twelve_tiles(page).reshape(-1, _TILE[1]), cell=(8, 8), block=(1, 1))


def hog(image: np.ndarray, cell: tuple[int, int], block: tuple[int, int], orientations: int = 9) -> np.ndarray:
    """``skimage.feature.hog`` (L2-Hys blocks, no gamma), vectorised: the same numbers to 1e-7.

    scikit-image normalises blocks in a Python loop, which costs more than the histograms on
    pages this size (2.6 ms against 1.0 ms here for the 160x256 page).
    """
    image = np.asarray(image, dtype=np.float64)
    g_row, g_col = np.zeros_like(image), np.zeros_like(image)
    g_row[1:-1] = image[2:] - image[:-2]
    g_col[:, 1:-1] = image[:, 2:] - image[:, :-2]
    (cr, cc), (n_rows, n_cols) = cell, (image.shape[0] // cell[0], image.shape[1] // cell[1])
    g_row, g_col = g_row[:n_rows * cr, :n_cols * cc], g_col[:n_rows * cr, :n_cols * cc]
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    bins = np.minimum((angle * (orientations / 180.0)).astype(np.intp), orientations - 1)
    cell_of = (np.arange(n_rows * cr) // cr)[:, None] * n_cols + (np.arange(n_cols * cc) // cc)[None, :]
    histogram = np.bincount((cell_of * orientations + bins).ravel(), weights=np.hypot(g_row, g_col).ravel(),
                            minlength=n_rows * n_cols * orientations)
    histogram = histogram.reshape(n_rows, n_cols, orientations) / (cr * cc)  # mean magnitude per cell
    blocks = np.lib.stride_tricks.sliding_window_view(histogram, block, axis=(0, 1))
    blocks = np.moveaxis(blocks, 2, -1).reshape(*blocks.shape[:2], -1)  # (row, col, cell row, cell col, bin)
    eps = 1e-5
    blocks = np.minimum(blocks / np.sqrt((blocks ** 2).sum(-1, keepdims=True) + eps ** 2), 0.2)
    return (blocks / np.sqrt((blocks ** 2).sum(-1, keepdims=True) + eps ** 2)).ravel().astype(np.float32)


def lbp(page: NormalisedPage) -> np.ndarray:
    """Uniform LBP (P=8, R=1) histogram, 10 bins summing to 1, of each of the 12 lead tiles."""
    from skimage.feature import local_binary_pattern  # here: an export's light runtime has no scikit-image

    histograms = []
    for tile in _twelve_tiles(page):
        # Integer input: LBP compares neighbours for equality, which float noise would break.
        codes = local_binary_pattern(np.round(tile * 255).astype(np.uint8), P=8, R=1, method="uniform")
        histograms.append(np.bincount(codes.astype(np.intp).ravel(), minlength=_LBP_BINS) / codes.size)
    return np.concatenate(histograms).astype(np.float32)


def _shrink(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Box-average ``image`` down to ``shape``; a whole-number factor needs no interpolation."""
    fy, fx = image.shape[0] // shape[0], image.shape[1] // shape[1]
    if fy >= 1 and fx >= 1 and image.shape == (shape[0] * fy, shape[1] * fx):
        # Summing strided views is several times faster than reshape(...).mean(axis=(1, 3)).
        total = sum(image[i::fy, j::fx] for i in range(fy) for j in range(fx))
        return (total / (fy * fx)).astype(np.float32)
    from skimage.transform import resize  # here: an export's light runtime has no scikit-image

    return resize(image, shape, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


# lead_tiles is the costliest step of hog_leads and lbp; when a search selects both, the tiles of
# the page being processed are kept for the second set. One entry, replaced as a whole, so a
# thread never sees another page's tiles.
_last_tiles: tuple[NormalisedPage | None, np.ndarray | None] = (None, None)


def _twelve_tiles(page: NormalisedPage) -> np.ndarray:
    """The 12 lead tiles in LEADS order; the rhythm strip is left out so lengths never vary."""
    global _last_tiles
    cached_page, tiles = _last_tiles
    if cached_page is not page:
        tiles = lead_tiles(page, _TILE)[: len(LEADS)]
        _last_tiles = (page, tiles)
    return tiles


# --- trace --------------------------------------------------------------------------------------

_FLAT = 0.02  # a trace whose largest excursion is below this (box heights) has no beats
_LEAD_MEASURES = ("amplitude", "baseline", "density", "st", "q")
_RHYTHM_MEASURES = ("rate", "rr_cv", "beats")


def trace(page: NormalisedPage) -> np.ndarray:
    """Per lead: amplitude, baseline, ink density, ST level, Q depth; then rate, RR CV, beat count.

    Heights are in lead-box heights, positive upwards. ``amplitude`` is the trace's full
    vertical extent, ``baseline`` its median level relative to the box centre. Beats are the
    largest excursions from the baseline; ``st`` is the mean level 60-120 ms after each, ``q`` the
    lowest point in the 40 ms before each, both relative to the baseline, median over beats.
    The rhythm measures come from the rhythm strip, or from lead II when the page has none:
    ``rate`` is beats per lead-area width (about 10 s) from the mean RR interval, ``rr_cv`` the
    RR intervals' coefficient of variation, ``beats`` the number found.
    """
    width = page.image.shape[1]
    px_per_s = width / SECONDS_ACROSS
    skip = label_skip(page)
    leads = read_traces(page.image, [page.lead_boxes[lead] for lead in LEADS], skip)
    values = _lead_measures(leads, px_per_s)
    if page.rhythm:
        strip, index = read_traces(page.image, [page.lead_boxes[RHYTHM]], skip), 0
    else:
        strip, index = leads, LEADS.index("II")
    rhythm = _rhythm_measures(strip, index, px_per_s, width)
    return np.nan_to_num(np.concatenate([values.ravel(), rhythm]).astype(np.float32),
                         nan=0.0, posinf=0.0, neginf=0.0)


def _lead_measures(traces: Traces, px_per_s: float) -> np.ndarray:
    """(boxes, len(_LEAD_MEASURES)); zeros for a box without ink."""
    out = np.zeros((len(traces.density), len(_LEAD_MEASURES)))
    baselines = np.median(traces.level, axis=1)
    amplitudes = traces.top.max(axis=1) - traces.bottom.min(axis=1)
    st_start = int(round(0.06 * px_per_s))
    st_end = max(int(round(0.12 * px_per_s)), st_start + 1)
    q_span = max(1, int(round(0.04 * px_per_s)))
    n = traces.level.shape[1]
    for i in np.flatnonzero(traces.density > 0):
        level, bottom, baseline = traces.level[i], traces.bottom[i], baselines[i]
        beats = _beats(traces, i, baseline, px_per_s)
        # ST: mean level over columns [r + st_start, r + st_end) after each beat, cut at the end.
        after = beats[beats + st_start < n][:, None] + np.arange(st_start, st_end)
        inside = after < n
        st = (level[np.minimum(after, n - 1)] * inside).sum(axis=1) / inside.sum(axis=1) - baseline
        # Q: lowest point over the q_span columns before each beat.
        before = beats[beats >= q_span][:, None] - np.arange(1, q_span + 1)
        q = bottom[before].min(axis=1, initial=np.inf) - baseline
        out[i] = (amplitudes[i], baseline, traces.density[i], _median_or_zero(st), _median_or_zero(q))
    return out


def _rhythm_measures(traces: Traces, i: int, px_per_s: float, page_width: int) -> list[float]:
    if traces.density[i] == 0:
        return [0.0] * len(_RHYTHM_MEASURES)
    level = traces.level[i]
    beats = _beats(traces, i, _quantile(level, 0.5), px_per_s)
    rr = np.diff(beats)
    if len(rr) >= 2:  # the mean RR is finer than a count, which moves in steps of a whole beat
        rate, rr_cv = page_width / rr.mean(), float(rr.std() / rr.mean())
    else:
        rate, rr_cv = len(beats) * page_width / len(level), 0.0
    return [float(rate), rr_cv, float(len(beats))]


def _beats(traces: Traces, i: int, baseline: float, px_per_s: float) -> np.ndarray:
    """Columns of the QRS complexes: the largest excursions from the baseline, up or down.

    Candidates are local maxima at least 0.25 s apart (240 bpm); a beat must reach 0.6 of the
    90th percentile of the candidates, so one tall ectopic beat does not hide the others.
    """
    excursion = np.maximum(traces.top[i] - baseline, baseline - traces.bottom[i])
    if excursion.max() < _FLAT:
        return np.zeros(0, dtype=int)
    candidates, _ = find_peaks(excursion, distance=max(1.0, 0.25 * px_per_s))
    if len(candidates) == 0:
        return candidates
    reference = _quantile(excursion[candidates], 0.9)
    return candidates[excursion[candidates] >= 0.6 * reference]


def _median_or_zero(values: np.ndarray) -> float:
    return _quantile(values, 0.5) if len(values) else 0.0


def _quantile(values, q: float) -> float:
    """``np.quantile`` (linear), without its per-call overhead: ~40 calls per page add up."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


# --- source_signals, rhythm, median_beat: the leads read at the source's resolution ----------------

class _OfSignals(NamedTuple):
    """A set that reads a SourcePage's signals; picklable (it holds a module-level function)."""

    function: Callable

    def __call__(self, page: SourcePage) -> np.ndarray:
        return self.function(page.signals)


# --- registry -----------------------------------------------------------------------------------

FEATURE_SETS: dict[str, FeatureSet] = {
    "hog_page": FeatureSet(1, hog_page),
    "hog_leads": FeatureSet(1, hog_leads),
    "lbp": FeatureSet(1, lbp),
    "trace": FeatureSet(2, trace),
    "signals": FeatureSet(1, signal_measures, SIGNAL_SIZE),
    "source_signals": FeatureSet(1, _OfSignals(measures_of), SOURCE_RESOLUTION),
    "rhythm": FeatureSet(1, _OfSignals(rhythm_measures), SOURCE_RESOLUTION),
    "median_beat": FeatureSet(1, _OfSignals(median_beats), SOURCE_RESOLUTION),
    # Its function is the transformer's (PageFeatures holds the backbone): see _embed_unbound.
    "embed": FeatureSet(0, lambda page: _embed_unbound()),
}

_NAMED_COLUMNS = {
    "lbp": tuple(f"lbp_{lead}_{b}" for lead in LEADS for b in range(_LBP_BINS)),
    "trace": tuple(f"trace_{lead}_{m}" for lead in LEADS for m in _LEAD_MEASURES)
    + tuple(f"trace_rhythm_{m}" for m in _RHYTHM_MEASURES),
    "signals": measure_names("signals"),
    "source_signals": measure_names("source_signals"),
    "rhythm": tuple(f"rhythm_{m}" for m in RHYTHM_MEASURES),
    "median_beat": median_beat_names(),
}


def blank_page(size: tuple[int, int] = DEFAULT_SIZE, layout: str = "3x4", rhythm: bool = True) -> NormalisedPage:
    """A white page with canonical lead boxes: what a set returns when there is nothing to see."""
    boxes = canonical_boxes(layout, rhythm, size)
    return NormalisedPage(image=np.ones(size, dtype=np.float32), lead_boxes=boxes, source_boxes=boxes,
                          layout=layout, rhythm=rhythm, method="blank", skew_deg=0.0,
                          source_size=(size[1], size[0]))


def _embed_unbound():
    raise RuntimeError("the embed set is computed through PageFeatures, which holds the pretrained backbone")


def set_length(name: str, spec: FeatureSet) -> int:
    """Length of the vector of set ``name`` as ``spec`` computes it (``embed``: its backbone's width)."""
    return len(spec.function) if isinstance(spec.function, Embedding) else feature_length(name)


@lru_cache(maxsize=None)
def feature_length(name: str) -> int:
    """Length of set ``name``'s vector (the same for every page)."""
    function, size = FEATURE_SETS[name].function, FEATURE_SETS[name].size
    if size == SOURCE_RESOLUTION:
        return len(function(blank_source_page()))
    return len(function(blank_page(size or DEFAULT_SIZE)))


def feature_names(name: str, length: int | None = None) -> tuple[str, ...]:
    """Column names of set ``name``: ``trace_V2_amplitude``, ``lbp_I_3``, ``hog_leads_0000``...
    (``length``: the set's vector length where the set itself decides it, as ``embed``'s backbone does)."""
    if name in _NAMED_COLUMNS:
        return _NAMED_COLUMNS[name]
    return tuple(f"{name}_{i:04d}" for i in range(feature_length(name) if length is None else length))


