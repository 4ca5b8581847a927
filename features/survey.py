"""What a page looks like, as opposed to what it shows: layout, rhythm strip, grid, page size.

These are the public dataset's shortcuts (layout follows the hospital and so the class; page
size gives COVID scans away), so they are never a model input. They serve to report metrics per
layout and page size, to audit whether a dataset's layout predicts its class, and to draw the
detected lead panels for a person to check. Rows are cached and computed in parallel like
feature rows (:mod:`features.extract`).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from features.extract import Source, extract_features
from features.pages import DEFAULT_SIZE, LEADS, RHYTHM, NormalisedPage

__all__ = ["PANELS", "describe_page", "layout_name", "size_bucket", "survey_pages"]

PANELS = (*LEADS, RHYTHM)
_SCALARS = ("six_by_two", "rhythm", "grid", "projection", "width", "height")
_VERSION = 1
_LENGTH = len(_SCALARS) + 4 * len(PANELS)


def describe_page(page: NormalisedPage) -> np.ndarray:
    """The survey row of a normalised page: its layout flags, source size and panel boxes.

    Boxes are fractions of the source width and height (zeros for a panel the page lacks).
    """
    width, height = page.source_size
    scale = np.array([width, height, width, height], dtype=np.float64)
    boxes = [np.asarray(page.source_boxes[p]) / scale if p in page.source_boxes else np.zeros(4) for p in PANELS]
    flags = [page.layout == "6x2", page.rhythm, page.grid, page.method == "projection", width, height]
    return np.concatenate([np.asarray(flags, dtype=np.float64), *boxes]).astype(np.float32)


def survey_pages(sources: Sequence[Source], *, n_jobs: int | None = 1,
                 cache_dir: str | os.PathLike | None = None, progress: bool | None = None) -> pd.DataFrame:
    """One row per page: layout (e.g. ``3x4_rhythm``), size_bucket, grid, found_by, width, height, boxes.

    ``boxes`` maps each panel found to (x0, y0, x1, y1) in source pixels. Raises
    :class:`~features.imageio.ImageReadError` naming an unreadable page, like feature extraction.
    """
    rows = extract_features(sources, {"survey": (_VERSION, describe_page, None)}, size=DEFAULT_SIZE,
                            lengths={"survey": _LENGTH}, cache_dir=cache_dir, n_jobs=n_jobs, progress=progress)
    records = []
    for row in rows:
        six_by_two, rhythm, grid, projection, width, height = (float(v) for v in row[:len(_SCALARS)])
        fractions = row[len(_SCALARS):].reshape(len(PANELS), 4).astype(np.float64)
        scale = np.array([width, height, width, height])
        boxes = {p: tuple(f * scale) for p, f in zip(PANELS, fractions) if f[2] > f[0]}
        records.append({
            "layout": layout_name("6x2" if six_by_two else "3x4", bool(rhythm), bool(grid)),
            "size_bucket": size_bucket(int(width), int(height)),
            "grid": bool(grid),
            "found_by": "projection" if projection else "fixed-fraction",
            "width": int(width), "height": int(height), "boxes": boxes,
        })
    return pd.DataFrame.from_records(records, columns=["layout", "size_bucket", "grid", "found_by", "width",
                                                       "height", "boxes"])


def layout_name(layout: str, rhythm: bool, grid: bool) -> str:
    """``3x4_rhythm``, ``6x2``, ``6x2_rhythm_gridless``...: safe as an MLflow metric name part."""
    return layout + ("_rhythm" if rhythm else "") + ("" if grid else "_gridless")


def size_bucket(width: int, height: int) -> str:
    """Orientation and long-side band, e.g. ``landscape_ge2000`` (device exports) or ``portrait_1000-1499``."""
    long_side = max(width, height)
    band = ("lt1000" if long_side < 1000 else "1000-1499" if long_side < 1500
            else "1500-1999" if long_side < 2000 else "ge2000")
    return f"{'landscape' if width >= height else 'portrait'}_{band}"
