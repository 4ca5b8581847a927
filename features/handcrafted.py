"""PageFeatures: the scikit-learn transformer over the feature sets of :mod:`features.sets`.

The sets themselves (what each computes, their registry and versions) are in :mod:`features.sets`,
re-exported here for the code that imported them from this module.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from features.embed import Embedding, cached_backbone_file
from features.extract import as_sources, extract_features, normalised_pages, rows_from_pages
from features.pages import DEFAULT_SIZE, NormalisedPage
from features.source_traces import SourcePage
from features.sets import (FEATURE_SETS, FeatureSet, blank_page, feature_length, feature_names,
                           hog, set_length)

__all__ = ["FEATURE_SETS", "FeatureSet", "PageFeatures", "blank_page", "feature_length", "feature_names", "hog",
           "set_length"]


class PageFeatures(TransformerMixin, BaseEstimator):
    """Feature matrix of ECG page images: the chosen sets of each normalised page, concatenated.

    Parameters
    ----------
    sets : sequence of str, default=("trace",)
        Names from :data:`FEATURE_SETS`, in column order. The default scored best alone on
        synthetic pages of an unseen seed (``bench/feature_sets.py``: 0.95 macro-F1 with a
        logistic regression; adding HOG dilutes it to 0.81) and is cheap. Searches choose their
        own sets from the experiment file.
    size : (height, width), default=(320, 512)
        Working size of the normalised lead area, for the sets that do not declare their own
        (``signals`` reads pages at 640x1024 whatever this is). A page is normalised once per
        distinct size its sets need.
    n_jobs : int or None, default=1
        Pages extracted in parallel (joblib; -1 for every core). The result does not depend on it.
    cache_dir : path or None, default=None
        Cache rows on disk here, keyed by the sha256 of each file's (or bytes input's) content
        and by set name, version and the size that set read; None disables caching. Arrays are never cached.
        Use :func:`features.cache.default_cache_dir` for the shared location; pruning the cache
        to its size bound is left to the caller (``FeatureCache.prune``).
    progress : bool or None, default=None
        Show a progress bar; None shows it on a terminal for 50 inputs or more.
    backbone : bytes or None, default=None
        The pretrained lead-mosaic backbone's file, for the ``embed`` set. None: taken from
        ``$SMARTECG_CACHE/pretrained`` the first time ``embed`` is computed, and kept here, so a
        model that uses the set carries its backbone wherever it is loaded.

    ``fit`` learns nothing. ``transform`` takes a sequence of paths, raw bytes or image arrays
    and returns float32 of shape (n_images, n_features). An unreadable image (missing, corrupt,
    not an image) raises :class:`features.imageio.ImageReadError` naming it: nothing is skipped
    silently, so whoever calls decides whether to drop the file or stop.
    """

    def __init__(self, sets=("trace",), size=DEFAULT_SIZE, n_jobs=1, cache_dir=None, progress=None, backbone=None):
        self.sets = sets
        self.size = size
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.progress = progress
        self.backbone = backbone

    def fit(self, X, y=None):
        """Check the parameters (so a bad configuration fails before any page is read)."""
        self._chosen_sets()
        return self

    def transform(self, X) -> np.ndarray:
        sets = self._chosen_sets()
        return extract_features(
            as_sources(X), sets, size=self._size(), lengths={name: set_length(name, spec) for name, spec in sets.items()},
            cache_dir=self.cache_dir, n_jobs=self.n_jobs, progress=self.progress,
        )

    def normalise(self, source) -> dict[tuple[int, int], NormalisedPage | SourcePage]:
        """One page read as every chosen set reads it, per size (for :meth:`transform_normalised`)."""
        return normalised_pages(source, self._chosen_sets(), size=self._size())

    def transform_normalised(self, pages) -> np.ndarray:
        """Rows of pages from :meth:`normalise`, perhaps changed since (explanations blank leads)."""
        sets = self._chosen_sets()
        return rows_from_pages(pages, sets, size=self._size(),
                               lengths={name: set_length(name, spec) for name, spec in sets.items()})

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray([column for name, spec in self._chosen_sets().items()
                           for column in feature_names(name, set_length(name, spec))], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False  # one image per item, not a numeric matrix
        return tags

    def _chosen_sets(self) -> dict[str, FeatureSet]:
        names = [self.sets] if isinstance(self.sets, str) else list(self.sets)
        unknown = [name for name in names if name not in FEATURE_SETS]
        if unknown or not names:
            raise ValueError(f"unknown or no feature sets {unknown or names}; choose from {sorted(FEATURE_SETS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"feature set listed twice in {names}")
        return {name: FEATURE_SETS[name] if name != "embed" else self._embed_set() for name in names}

    def _embed_set(self) -> FeatureSet:
        if self.backbone is None:
            # Kept as a parameter, not learnt: the transformer needs no fit, and its copies
            # (clone, pickle, the registered model) must embed with this very backbone.
            self.backbone = cached_backbone_file()
        embedding = Embedding(self.backbone)
        return FeatureSet(embedding.version, embedding)

    def _size(self) -> tuple[int, int]:
        height, width = (int(v) for v in self.size)
        if height < 1 or width < 1:
            raise ValueError(f"size must be a positive (height, width), got {self.size!r}")
        return height, width
