"""The embed feature set: a pretrained backbone's embedding, carried by the transformer, cached by its digest."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from features.handcrafted import PageFeatures
from features.pretrained import BackboneUnavailable

pytestmark = pytest.mark.slow


def save_tiny_backbone(root, seed: int):
    """An untrained lead-mosaic backbone saved where searches look (its weights are all that matter here)."""
    import keras

    from automl.engines.backbones import BACKBONE_VIEWS, build_backbone, save_backbone

    keras.utils.set_random_seed(seed)
    model = build_backbone("leads", (*BACKBONE_VIEWS["leads"], 1), width=4, depth=2)
    save_backbone(model, {"view": "leads", "size": list(BACKBONE_VIEWS["leads"]), "depth": 2}, root / "pretrained" / "leads")


def test_embed_rows_come_from_the_backbone_the_transformer_carries(tiny_synthetic, tmp_path, monkeypatch):
    from features.dataset import scan

    paths = [str(p) for p in scan(tiny_synthetic, progress=False).frame["path"]][:3]
    monkeypatch.setenv("SMARTECG_CACHE", str(tmp_path / "none"))
    with pytest.raises(BackboneUnavailable, match="smartecg pretrain"):
        PageFeatures(sets=("embed",)).transform(paths)

    monkeypatch.setenv("SMARTECG_CACHE", str(tmp_path / "a"))
    save_tiny_backbone(tmp_path / "a", seed=1)
    features = PageFeatures(sets=("trace", "embed"), cache_dir=tmp_path / "rows")
    rows = features.transform(paths)
    names = features.get_feature_names_out()
    assert rows.shape == (3, len(names)) and names[-1] == "embed_0007" and np.isfinite(rows).all()
    embed = rows[:, -8:]
    assert np.abs(embed).sum() > 0 and not np.allclose(embed[0], embed[1])  # pages differ, so do their embeddings

    # Loaded elsewhere (no backbone in that cache), the pickled transformer embeds with its own.
    monkeypatch.setenv("SMARTECG_CACHE", str(tmp_path / "none"))
    assert np.array_equal(pickle.loads(pickle.dumps(features)).transform(paths), rows)

    # Another backbone is another set: the cached rows of the first are not served for it.
    monkeypatch.setenv("SMARTECG_CACHE", str(tmp_path / "b"))
    save_tiny_backbone(tmp_path / "b", seed=2)
    other = PageFeatures(sets=("trace", "embed"), cache_dir=tmp_path / "rows").transform(paths)
    assert np.array_equal(other[:, :-8], rows[:, :-8]) and not np.allclose(other[:, -8:], embed)
