"""A site's pages as the federation uses them: its saved split, its feature rows, its SiteData.

Everything here runs at the site (or, in a simulation, on its behalf): the pages and their feature
rows stay in this process.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from automl.federated.protocol import SiteData
from features.dataset import CLASSES, Manifest, assign_splits

__all__ = ["SitePages", "class_indices", "site_pages", "to_site_data"]


@dataclass
class SitePages:
    """A site's pages with their split: train (learn), validation (check) and holdout (kept for scoring)."""

    name: str
    frame: pd.DataFrame  # path, label, sha256, split

    def part(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split]


def site_pages(name: str, manifest: Manifest, *, seed: int = 0, fractions=(0.7, 0.15, 0.15)) -> SitePages:
    """The site's stratified split, saved beside its pages like a search's (so reruns keep the holdout unseen)."""
    frame = assign_splits(manifest, fractions=fractions, seed=seed)
    return SitePages(name, frame.reset_index(drop=True))


def class_indices(labels, classes=CLASSES) -> np.ndarray:
    classes = list(classes)
    return np.asarray([classes.index(str(label)) for label in labels], dtype=int)


def to_site_data(pages: SitePages, features, classes=CLASSES) -> SiteData:
    """Feature rows of the site's train (learn) and validation (check) pages."""
    learn, check = pages.part("train"), pages.part("validation")
    return SiteData(pages.name,
                    np.asarray(features.transform(list(learn["path"])), dtype=float), class_indices(learn["label"], classes),
                    np.asarray(features.transform(list(check["path"])), dtype=float), class_indices(check["label"], classes))
