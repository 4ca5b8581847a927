"""The 12 leads of a normalised page in one fixed 3x4 mosaic, whatever layout the page was printed in.

Rows I/aVR/V1/V4, II/aVL/V2/V5, III/aVF/V3/V6, as on a 3x4 printout; the rhythm strip is left
out. Every tile has the same time and voltage scale, so a network cannot tell a 6x2 page from a
3x4 page of the same heart:

* Time: the lead area spans 10 s across in both layouts (``traces.SECONDS_ACROSS``), and the
  tile in mosaic column ``c`` shows seconds ``2.5 c`` to ``2.5 (c + 1)`` of its lead, the 2.5 s
  a 3x4 printout shows there. On a 6x2 page that is the first half of the lead's 5 s panel
  (I, II, III, V1-V3) or its second half (aVR, aVL, aVF, V4-V6), so the tile shows the same
  beats as the 3x4 printout of the same recording, at the same seconds per pixel. The start
  of each window (lead name, separator line) and its very end (the next panel's separator)
  are left out: they mark panel edges, which differ between layouts.
* Voltage: each tile is :data:`WINDOW_MV` tall, centred on the lead's baseline (the middle of
  its row), measured with the page's calibration pulse (else 10 mm/mV). 6x2 rows are closer
  together than 3x4 rows (26 mm against 38 mm on EDAN pages), so stretching each box to a tile
  would make 6x2 complexes taller; what lies outside the lead's own box (a neighbouring row's
  trace) is painted paper.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from features.pages import LEADS, NormalisedPage
from features.traces import SECONDS_ACROSS, rows_per_mv

__all__ = ["EDGE_SECONDS", "LABEL_SECONDS", "MOSAIC_GRID", "WINDOW_MV", "MosaicCoordinates", "column_seconds",
           "lead_mosaic", "mosaic_coordinates"]

MOSAIC_GRID = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
PANEL_SECONDS = 2.5  # one column of a 3x4 printout
LABEL_SECONDS = 0.3  # left out at a window's start: the printed lead name and a separator line
EDGE_SECONDS = 0.05  # left out at its end: the next panel's separator line
WINDOW_MV = 3.0  # height of a tile: +-1.5 mV about the baseline
_COLUMN = {lead: c for leads in MOSAIC_GRID for c, lead in enumerate(leads)}
_LEAD_INDEX = np.array([[LEADS.index(lead) for lead in leads] for leads in MOSAIC_GRID])


def column_seconds(lead: str) -> tuple[float, float]:
    """(start, end) of the 2.5 s that ``lead``'s mosaic column, like a 3x4 printout, shows of the 10 s."""
    start = _COLUMN[lead] * PANEL_SECONDS
    return start, start + PANEL_SECONDS


class MosaicCoordinates(NamedTuple):
    """Where each mosaic pixel comes from on the normalised page.

    ``ys``, ``xs``: (H, W) continuous page coordinates of each pixel's centre (page pixel i
    spans [i, i + 1)); ``inside``: (H, W) whether that point lies in the lead's own box;
    ``lead``: (H, W) index into :data:`~features.pages.LEADS` of the tile's lead; ``factor``:
    the box-average the page needs first so a tile is a reduction of it.
    """

    ys: np.ndarray
    xs: np.ndarray
    inside: np.ndarray
    lead: np.ndarray
    factor: tuple[int, int]


def mosaic_coordinates(page: NormalisedPage, size: tuple[int, int]) -> MosaicCoordinates:
    """The page coordinates :func:`lead_mosaic` samples for a mosaic of ``size`` = (H, W).

    Also what maps an attribution over the mosaic back onto the page (``automl.explain``).
    """
    height, width = size
    px_per_s = page.image.shape[1] / SECONDS_ACROSS
    window_h = WINDOW_MV * rows_per_mv(page)
    window_w = (PANEL_SECONDS - LABEL_SECONDS - EDGE_SECONDS) * px_per_s
    row_edges = np.round(np.linspace(0, height, 4)).astype(int)
    col_edges = np.round(np.linspace(0, width, 5)).astype(int)
    # Which tile each mosaic row and column belongs to, and where in that tile it sits.
    tile_row = np.repeat(np.arange(3), np.diff(row_edges))
    tile_col = np.repeat(np.arange(4), np.diff(col_edges))
    in_row = (np.arange(height) - row_edges[tile_row] + 0.5) / np.diff(row_edges)[tile_row]
    in_col = (np.arange(width) - col_edges[tile_col] + 0.5) / np.diff(col_edges)[tile_col]

    boxes = np.array([[page.lead_boxes[lead] for lead in leads] for leads in MOSAIC_GRID])  # (3, 4, 4)
    centre_y = (boxes[..., 1] + boxes[..., 3]) / 2
    start_x = np.array([column_seconds(lead)[0] + LABEL_SECONDS for lead in MOSAIC_GRID[0]]) * px_per_s
    # Continuous page coordinates of every mosaic pixel's centre (pixel i spans [i, i + 1)).
    ys = centre_y[tile_row[:, None], tile_col[None, :]] + (in_row[:, None] - 0.5) * window_h
    xs = np.broadcast_to(start_x[tile_col] + in_col * window_w, (height, width))
    box = boxes[tile_row[:, None], tile_col[None, :]]  # (H, W, 4)
    inside = (ys >= box[..., 1]) & (ys < box[..., 3]) & (xs >= box[..., 0]) & (xs < box[..., 2])
    lead = _LEAD_INDEX[tile_row[:, None], tile_col[None, :]]
    factor = (max(1, round(window_h * 3 / height)), max(1, round(window_w * 4 / width)))
    return MosaicCoordinates(ys, xs, inside, lead, factor)


def lead_mosaic(page: NormalisedPage, size: tuple[int, int]) -> np.ndarray:
    """float32 (H, W) with ink 1.0 and paper 0.0: the leads of ``page`` in the 3x4 mosaic.

    Tile edges are ``size`` split as evenly as whole pixels allow (a 64-row mosaic has rows of
    21, 22 and 21). ``page`` should be normalised at a size where a tile is a reduction of the
    page (the page is box-averaged by the reduction factor first, so thin traces survive).
    """
    ink = np.subtract(1.0, page.image, dtype=np.float32)  # ink 1, so the padding (0) is paper
    at = mosaic_coordinates(page, size)
    if at.factor != (1, 1):
        ink = ndimage.uniform_filter(ink, size=at.factor)  # one box average for all tiles: they share a scale
    mosaic = ndimage.map_coordinates(ink, [at.ys - 0.5, at.xs - 0.5], order=1, mode="constant", cval=0.0)
    mosaic[~at.inside] = 0.0
    return mosaic.astype(np.float32, copy=False)
