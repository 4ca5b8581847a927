"""SmartECG's pretrained backbones as a reader finds them: where they are, their recipe, the model.

``smartecg pretrain`` (:mod:`automl.pretrain`) saves one backbone per view as
``<dir>/<view>/backbone.keras`` beside ``recipe.json`` (view, size, architecture, generator
settings, seed, steps, validation figures). ``<dir>`` is ``--weights-dir`` where given, else
``$SMARTECG_CACHE/pretrained``: where the ``transfer`` family and the ``embed`` feature set look.
Nothing is ever downloaded.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BACKBONE_VIEWS", "MODEL_FILE", "RECIPE_FILE", "Backbone", "BackboneUnavailable", "backbone_dir",
           "find_backbone", "load_backbone", "require_backbone"]

# The view each backbone reads and its tensor size (height, width); for signals only the width counts.
BACKBONE_VIEWS = {"leads": (64, 96), "signals": (12, 256)}
MODEL_FILE, RECIPE_FILE = "backbone.keras", "recipe.json"


class BackboneUnavailable(RuntimeError):
    """A pretrained backbone was asked for and is not on this machine."""


@dataclass(frozen=True)
class Backbone:
    view: str
    folder: Path
    recipe: dict

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.recipe["size"])

    @property
    def blocks(self) -> int:
        return int(self.recipe["depth"])


def backbone_dir(weights_dir: str | os.PathLike | None = None) -> Path:
    """Where backbones are saved and looked for: ``weights_dir``, else ``$SMARTECG_CACHE/pretrained``."""
    from features.cache import cache_root

    return Path(weights_dir) if weights_dir else cache_root() / "pretrained"


def _places(weights_dir: str | os.PathLike | None) -> list[Path]:
    """Where backbones are looked for: ``weights_dir`` first when given, then the cache."""
    return [backbone_dir(weights_dir)] + ([backbone_dir()] if weights_dir else [])


def find_backbone(view: str, weights_dir: str | os.PathLike | None = None) -> Backbone | None:
    """The saved backbone for ``view``, or None. With ``weights_dir``, there first, then in the cache."""
    for place in _places(weights_dir):
        folder = place / view
        try:
            recipe = json.loads((folder / RECIPE_FILE).read_text())
        except (OSError, ValueError):
            continue
        if (folder / MODEL_FILE).is_file() and recipe.get("view") == view:
            return Backbone(view, folder, recipe)
    return None


def require_backbone(view: str, weights_dir: str | os.PathLike | None = None) -> Backbone:
    """The saved backbone for ``view``; :class:`BackboneUnavailable` in one line when absent."""
    found = find_backbone(view, weights_dir)
    if found is None:
        where = " or ".join(str(place / view) for place in _places(weights_dir))
        raise BackboneUnavailable(f"no pretrained {view} backbone in {where}: run `smartecg pretrain` once (it "
                                  "trains on generated pages, no download), or pass --weights-dir DIR")
    return found


def load_backbone(view: str, weights_dir: str | os.PathLike | None = None):
    """(Keras model, :class:`Backbone`) for ``view``; :class:`BackboneUnavailable` in one line when absent."""
    import features.tf_env  # noqa: F401  (before Keras loads TensorFlow)
    import keras

    found = require_backbone(view, weights_dir)
    return keras.models.load_model(found.folder / MODEL_FILE, compile=False), found
