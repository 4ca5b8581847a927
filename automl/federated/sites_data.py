"""A site's pages as the federation uses them: its saved split, its feature rows, its SiteData.

Everything here runs at the site (or, in a simulation, on its behalf): the pages and their feature
rows stay in this process.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from automl.federated.protocol import SiteData
from features.cache import cache_root
from features.dataset import CLASSES, Manifest, assign_splits

__all__ = ["SitePages", "class_indices", "site_pages", "site_split_file", "to_site_data"]


@dataclass
class SitePages:
    """A site's pages with their split: train (learn), validation (check) and holdout (kept for scoring)."""

    name: str
    frame: pd.DataFrame  # path, label, sha256, split

    def part(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split]


def site_pages(name: str, manifest: Manifest, *, seed: int = 0, fractions=(0.7, 0.15, 0.15),
               split_file=None) -> SitePages:
    """The site's stratified split, saved beside its pages like a search's (so reruns keep the holdout unseen).

    ``split_file`` saves it elsewhere: sites cut from one folder (a site CSV, approximated sites)
    share that folder, and one split file there would mix their splits (:func:`site_split_file`).
    """
    frame = assign_splits(manifest, fractions=fractions, seed=seed, split_file=split_file)
    return SitePages(name, frame.reset_index(drop=True))


def site_split_file(name: str, manifest: Manifest, sites: dict[str, Manifest]) -> Path | None:
    """Where site ``name``'s split is saved: None (beside its pages) when its folder is its own,
    else a file of its own under the cache's ``splits/``, named after the folder and the site."""
    root = manifest.root.resolve()
    if sum(m.root.resolve() == root for m in sites.values()) < 2:
        return None
    folder = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "site"
    site = hashlib.sha256(name.encode()).hexdigest()[:8]  # two names of one slug stay apart
    return cache_root() / "splits" / f"{root.name}-{folder}-site-{slug}-{site}.csv"


def class_indices(labels, classes=CLASSES) -> np.ndarray:
    classes = list(classes)
    return np.asarray([classes.index(str(label)) for label in labels], dtype=int)


def to_site_data(pages: SitePages, features, classes=CLASSES) -> SiteData:
    """Feature rows of the site's train (learn) and validation (check) pages."""
    learn, check = pages.part("train"), pages.part("validation")
    return SiteData(pages.name,
                    np.asarray(features.transform(list(learn["path"])), dtype=float), class_indices(learn["label"], classes),
                    np.asarray(features.transform(list(check["path"])), dtype=float), class_indices(check["label"], classes))
