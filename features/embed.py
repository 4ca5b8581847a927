"""The ``embed`` feature set: what SmartECG's pretrained lead-mosaic backbone makes of a page.

The backbone (``smartecg pretrain``; :mod:`features.pretrained`) was trained on generated pages
to tell class, rhythm, territory, Q waves, rate and ST shift; frozen, its pooled last block is a
vector a gradient-boosting model or TPOT can learn from on few real pages. :class:`Embedding`
holds the backbone's file itself, so a model that uses the set carries its backbone to any
machine, and cached rows are keyed by the backbone's digest: another backbone is another set.
"""
from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from features.mosaic import lead_mosaic
from features.pages import NormalisedPage
from features.pretrained import BACKBONE_VIEWS, MODEL_FILE, BackboneUnavailable, find_backbone

__all__ = ["EMBED_VERSION", "Embedding", "cached_backbone_file"]

EMBED_VERSION = 1
_NETWORKS: dict[str, object] = {}  # digest -> loaded network, once per process


class Embedding:
    """``page -> embedding`` of the lead mosaic by the backbone in ``model_bytes`` (picklable)."""

    def __init__(self, model_bytes: bytes) -> None:
        self.model_bytes = model_bytes
        self.digest = hashlib.sha256(model_bytes).hexdigest()[:16]
        self.size = BACKBONE_VIEWS["leads"]

    @property
    def version(self) -> str:
        """The cache key's version: the set's own and the backbone's digest."""
        return f"{EMBED_VERSION}:{self.digest}"

    def __call__(self, page: NormalisedPage) -> np.ndarray:
        mosaic = lead_mosaic(page, self.size)[None, :, :, None].astype(np.float32)
        return np.asarray(self._network()(mosaic, training=False), dtype=np.float32)[0]

    def __len__(self) -> int:
        return int(self._network().output_shape[-1])

    def _network(self):
        if self.digest not in _NETWORKS:
            import features.tf_env  # noqa: F401  (before Keras loads TensorFlow)
            import keras

            # Keras loads from a file only; the copy goes as soon as the network is in memory.
            with tempfile.TemporaryDirectory(prefix="smartecg-embed-") as folder:
                path = os.path.join(folder, MODEL_FILE)
                with open(path, "wb") as fh:
                    fh.write(self.model_bytes)
                _NETWORKS[self.digest] = keras.models.load_model(path, compile=False)
        return _NETWORKS[self.digest]


def cached_backbone_file() -> bytes:
    """The lead-mosaic backbone where searches look (``$SMARTECG_CACHE/pretrained/leads``), as bytes."""
    found = find_backbone("leads")
    if found is None:
        raise BackboneUnavailable("the embed feature set needs a pretrained lead-mosaic backbone and there is none in "
                                  "$SMARTECG_CACHE/pretrained/leads: run `smartecg pretrain` once (no download)")
    return (found.folder / MODEL_FILE).read_bytes()
