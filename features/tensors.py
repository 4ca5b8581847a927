"""Network inputs from ECG page images: a scikit-learn transformer, cached and parallel.

Three views of a page (``view``), each float32 and each seeing only the lead area, never the
header, footer or page margins (:func:`~features.pages.normalise_page` leaves them out):

* ``"page"``: the normalised lead area resampled to ``size`` = (H, W) -> (n, H, W, 1). It shows
  the printed layout (3x4 or 6x2, rhythm strip or not): the one view a network can tell
  layouts apart in.
* ``"leads"``: the 12 leads in one fixed 3x4 mosaic of ``size`` -> (n, H, W, 1), whatever the
  page's layout, at one time and voltage scale (:mod:`features.mosaic`); the rhythm strip is
  left out.
* ``"signals"``: each lead's trace in mV (:func:`features.traces.lead_signals`, read off the
  page normalised at ``SIGNAL_SIZE``) over the same seconds as its mosaic tile, resampled to
  ``L = size[1]`` samples -> (n, L, 12), leads in ``LEADS`` order, channels last for a Conv1D.
  ``size[0]`` is not used. Unlike :func:`~features.traces.signal_matrix` (each lead's first
  2.25 s), the windows are where a 3x4 printout shows each lead, so the beats line up across
  leads alike on 3x4 and 6x2 pages and a network cannot tell the layout from which leads are
  simultaneous.

Images have ink 1.0 and paper 0.0, so the zeros a convolution pads with, or an augmentation
fills with, are paper. Pages are normalised at a working size of at least 320x512 and then
reduced: the lead rows are not found reliably on pages decoded much smaller.
"""
from __future__ import annotations

from functools import partial

import numpy as np
from scipy import ndimage

try:
    from sklearn.base import BaseEstimator, TransformerMixin
except ImportError:  # an export's light runtime makes a network's inputs without scikit-learn
    _ESTIMATOR_BASES: tuple = ()
else:
    _ESTIMATOR_BASES = (TransformerMixin, BaseEstimator)

from features.extract import as_sources, extract_features, normalised_pages, rows_from_pages
from features.mosaic import EDGE_SECONDS, column_seconds, lead_mosaic, mosaic_coordinates
from features.pages import DEFAULT_SIZE, LEADS, RHYTHM, NormalisedPage
from features.traces import LABEL_SKIP, SECONDS_ACROSS, SIGNAL_SIZE, lead_signals

__all__ = ["VIEWS", "PageTensors"]

VIEWS = ("page", "leads", "signals")
# Bump a view's version whenever its output changes: cached rows are keyed by it.
_VERSIONS = {"page": 1, "leads": 1, "signals": 1}


class PageTensors(*_ESTIMATOR_BASES):
    """Float32 network inputs of ECG page images, one array per page (see the module docstring).

    Parameters
    ----------
    view : {"page", "leads", "signals"}, default="leads"
        What the network sees: the whole lead area, the layout-proof 3x4 mosaic of the leads,
        or the 12 leads as 1-D signals.
    size : (height, width), default=(64, 96)
        Output size of an image view; for ``"signals"`` only the width counts (samples per lead).
    suppress_grid : bool, default=True
        Paint the printed grid white, or keep it (passed to :func:`~features.pages.normalise_page`).
    n_jobs : int or None, default=1
        Pages extracted in parallel (joblib; -1 for every core). The result does not depend on it.
    cache_dir : path or None, default=None
        Cache each page's tensor on disk here, keyed by the sha256 of the file's (or bytes
        input's) content, the view, its size and version and the grid choice; None disables
        caching. Arrays are never cached.
    progress : bool or None, default=None
        Show a progress bar; None shows it on a terminal for 50 inputs or more.

    ``fit`` learns nothing. ``transform`` takes a sequence of paths, raw bytes or image arrays and
    returns float32 of shape ``(n_images, *input_shape)``. An unreadable image raises
    :class:`features.imageio.ImageReadError` naming it; nothing is skipped silently.
    """

    def __init__(self, view="leads", size=(64, 96), suppress_grid=True, n_jobs=1, cache_dir=None, progress=None):
        self.view = view
        self.size = size
        self.suppress_grid = suppress_grid
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.progress = progress

    def fit(self, X, y=None):
        """Check the parameters (so a bad configuration fails before any page is read)."""
        self._set_spec()
        return self

    def transform(self, X) -> np.ndarray:
        name, spec = self._set_spec()
        shape = self.input_shape
        rows = extract_features(
            as_sources(X), {name: spec}, size=spec[2], lengths={name: int(np.prod(shape))},
            cache_dir=self.cache_dir, n_jobs=self.n_jobs, progress=self.progress,
            suppress_grid=self._suppress_grid(),
        )
        return rows.reshape(len(rows), *shape)

    def normalise(self, source) -> dict[tuple[int, int], NormalisedPage]:
        """The page normalised as :meth:`transform` reads it (for :meth:`transform_normalised`)."""
        name, spec = self._set_spec()
        return normalised_pages(source, {name: spec}, size=spec[2], suppress_grid=self._suppress_grid())

    def transform_normalised(self, pages) -> np.ndarray:
        """Tensors of pages from :meth:`normalise`, perhaps changed since (explanations blank leads)."""
        name, spec = self._set_spec()
        shape = self.input_shape
        rows = rows_from_pages(pages, {name: spec}, size=spec[2], lengths={name: int(np.prod(shape))})
        return rows.reshape(len(rows), *shape)

    def page_coordinates(self, page: NormalisedPage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each element of ``page``'s tensor comes from: (ys, xs, lead), each of the tensor's
        shape without its channel.

        ``ys``, ``xs`` are continuous coordinates on ``page`` (pixel i spans [i, i + 1)), which
        must be normalised as :meth:`normalise` does; ``lead`` indexes
        :data:`~features.pages.LEADS` (the rhythm strip counts as lead II). This maps an
        attribution over the tensor back to the page and to its leads.
        """
        view, (height, width) = self._view(), self._size()
        if view == "leads":
            at = mosaic_coordinates(page, (height, width))
            return np.array(at.ys), np.array(at.xs), np.array(at.lead)
        if view == "page":
            page_h, page_w = page.image.shape
            ys, xs = np.meshgrid((np.arange(height) + 0.5) * (page_h / height),
                                 (np.arange(width) + 0.5) * (page_w / width), indexing="ij")
            return ys, xs, _lead_at(page, ys, xs)
        px_per_s = page.image.shape[1] / SECONDS_ACROSS
        ys, xs = np.empty((width, len(LEADS))), np.empty((width, len(LEADS)))
        for k, lead in enumerate(LEADS):
            box = page.lead_boxes[lead]
            ys[:, k] = (box[1] + box[3]) / 2
            xs[:, k] = _signal_seconds(lead, width) * px_per_s
        return ys, xs, np.broadcast_to(np.arange(len(LEADS)), (width, len(LEADS))).copy()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one page's tensor: (H, W, 1) for image views, (L, 12) for signals."""
        view, (height, width) = self._view(), self._size()
        return (width, 12) if view == "signals" else (height, width, 1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False  # one image per item, not a numeric matrix
        return tags

    def _set_spec(self):
        """(cache name, (version, row function, working page size)) for :func:`extract_features`."""
        view, size = self._view(), self._size()
        self._suppress_grid()
        if view == "signals":
            return f"tensors/signals/{size[1]}", (_VERSIONS[view], partial(_signals_row, length=size[1]), SIGNAL_SIZE)
        # The output size is in the name: pages of one working size serve several output sizes.
        row = partial(_page_row if view == "page" else _leads_row, size=size)
        return f"tensors/{view}/{size[0]}x{size[1]}", (_VERSIONS[view], row, _working_size(view, size))

    def _view(self) -> str:
        if self.view not in VIEWS:
            raise ValueError(f"unknown view {self.view!r}; choose from {', '.join(VIEWS)}")
        return self.view

    def _size(self) -> tuple[int, int]:
        try:
            height, width = (int(v) for v in self.size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be (height, width), got {self.size!r}") from None
        smallest = (3, 4) if self.view == "leads" else (1, 1)  # the mosaic needs a pixel per tile
        if height < smallest[0] or width < smallest[1]:
            raise ValueError(f"size must be at least {smallest} for view {self.view!r}, got {self.size!r}")
        return height, width

    def _suppress_grid(self) -> bool:
        if not isinstance(self.suppress_grid, (bool, np.bool_)):
            raise ValueError(f"suppress_grid must be True or False, got {self.suppress_grid!r}")
        return bool(self.suppress_grid)


def _working_size(view: str, size: tuple[int, int]) -> tuple[int, int]:
    """The size pages are normalised at: DEFAULT_SIZE, or larger in proportion when the output needs it.

    A mosaic tile spans about a fifth of the page's height (3 mV) and of its width (2.15 s), so the
    page must be about twice the mosaic's height and 1.25 times its width for tiles to be reductions.
    """
    need = size if view == "page" else (2 * size[0], size[1] + size[1] // 4)
    scale = max(1.0, need[0] / DEFAULT_SIZE[0], need[1] / DEFAULT_SIZE[1])
    return int(np.ceil(DEFAULT_SIZE[0] * scale)), int(np.ceil(DEFAULT_SIZE[1] * scale))


def _page_row(page: NormalisedPage, size: tuple[int, int]) -> np.ndarray:
    """The lead area at ``size``, ink 1.0: box-averaged by the reduction, then sampled linearly."""
    (height, width), (page_h, page_w) = size, page.image.shape
    ink = np.subtract(1.0, page.image, dtype=np.float32)
    factor = (max(1, round(page_h / height)), max(1, round(page_w / width)))
    if factor != (1, 1):
        ink = ndimage.uniform_filter(ink, size=factor)  # so thin traces average into grey, not vanish
    ys = (np.arange(height) + 0.5) * (page_h / height) - 0.5
    xs = (np.arange(width) + 0.5) * (page_w / width) - 0.5
    image = ndimage.map_coordinates(ink, np.meshgrid(ys, xs, indexing="ij"), order=1, mode="nearest")
    return image.astype(np.float32, copy=False).ravel()


def _leads_row(page: NormalisedPage, size: tuple[int, int]) -> np.ndarray:
    return lead_mosaic(page, size).ravel()


# lead_signals leaves out a tenth of each panel for its printed name: 0.5 s of a 6x2 panel's 5 s.
# Signal windows start that late in every layout, so none begins before its trace was read.
_SIGNAL_SKIP_SECONDS = LABEL_SKIP * 5.0


def _signal_seconds(lead: str, length: int) -> np.ndarray:
    """The second (of the lead area's 10) each of a signal tensor's ``length`` samples is read at."""
    start, end = column_seconds(lead)
    start, end = start + _SIGNAL_SKIP_SECONDS, end - EDGE_SECONDS
    return start + (np.arange(length) + 0.5) * ((end - start) / length)


def _lead_at(page: NormalisedPage, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Index into LEADS of the panel each point lies in (the rhythm strip is lead II)."""
    lead = np.full(ys.shape, LEADS.index("II"))
    for name, (x0, y0, x1, y1) in page.lead_boxes.items():
        if name != RHYTHM:
            lead[(ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)] = LEADS.index(name)
    return lead


def _signals_row(page: NormalisedPage, length: int) -> np.ndarray:
    """(length, 12) in mV, flattened: a row per sample, a column per lead."""
    signals = lead_signals(page)
    out = np.empty((length, len(LEADS)), dtype=np.float32)
    for column, lead in zip(out.T, LEADS):
        seconds = _signal_seconds(lead, length)
        # Sample k of a signal covers [start_seconds + k / rate, ... + (k + 1) / rate).
        where = (seconds - signals.start_seconds[lead]) * signals.samples_per_second - 0.5
        trace = signals.mv[lead]
        column[:] = np.interp(where, np.arange(len(trace)), trace)
    return out.ravel()
