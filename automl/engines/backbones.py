"""SmartECG's own pretrained backbones: built, saved with their recipe, unfrozen by block.

A backbone maps one view of a page (:class:`features.tensors.PageTensors`: the layout-proof
lead mosaic, or the 12 lead signals) to an embedding; ``smartecg pretrain`` trains one per view
on generated pages. Where they are kept and how they are found and loaded is
:mod:`features.pretrained` (re-exported here). Layers are named ``block<i>_...`` so that
fine-tuning can unfreeze the last blocks only.
"""
from __future__ import annotations

import automl._tf_env  # noqa: F401  (before TensorFlow is imported)

import json
from pathlib import Path

from features.atomic import replacing, write_text

from features.pretrained import (BACKBONE_VIEWS, MODEL_FILE, RECIPE_FILE, Backbone, BackboneUnavailable,
                                 backbone_dir, find_backbone, load_backbone)

__all__ = ["BACKBONE_VIEWS", "Backbone", "BackboneUnavailable", "backbone_dir", "build_backbone", "find_backbone",
           "load_backbone", "save_backbone", "unfreeze_last_blocks"]


def save_backbone(model, recipe: dict, folder: Path) -> Path:
    """Write ``model`` and ``recipe`` into ``folder`` whole: a crash mid-save leaves the previous backbone."""
    folder.mkdir(parents=True, exist_ok=True)
    # The model first: a recipe never describes a model that is not there yet.
    with replacing(folder / MODEL_FILE) as part:
        model.save(part)
    write_text(folder / RECIPE_FILE, json.dumps(recipe, indent=2, default=float))
    return folder


def build_backbone(view: str, input_shape: tuple[int, ...], *, width: int = 16, depth: int = 4):
    """An untrained backbone for ``view``: residual blocks (2-D for the mosaic, 1-D for signals)
    ending in global average pooling; ``block<i>_`` names its layers."""
    import keras
    from keras import layers

    two_d = view != "signals"
    conv = layers.Conv2D if two_d else layers.Conv1D
    kernel = 3 if two_d else 7
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block in range(depth):
        filters, name = width * 2 ** min(block, 3), f"block{block}"
        shortcut = x
        y = conv(filters, kernel, strides=1 if block == 0 else 2, padding="same", use_bias=False, name=f"{name}_conv1")(x)
        y = layers.BatchNormalization(name=f"{name}_bn1")(y)
        y = layers.ReLU(name=f"{name}_relu1")(y)
        y = conv(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv2")(y)
        y = layers.BatchNormalization(name=f"{name}_bn2")(y)
        shortcut = conv(filters, 1, strides=1 if block == 0 else 2, use_bias=False, name=f"{name}_project")(shortcut)
        x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))
    pool = layers.GlobalAveragePooling2D if two_d else layers.GlobalAveragePooling1D
    return keras.Model(inputs, pool(name="embedding")(x), name=f"smartecg_{view}_backbone")


def unfreeze_last_blocks(backbone, blocks: int) -> None:
    """Make the last ``blocks`` blocks trainable and the rest frozen (batch norm stays in inference mode
    either way: the transfer network calls the backbone with ``training=False``)."""
    numbered = [(layer, int(layer.name[len("block"):].split("_")[0])) for layer in backbone.layers
                if layer.name.startswith("block")]
    depth = 1 + max((block for _, block in numbered), default=-1)
    backbone.trainable = True
    for layer, block in numbered:
        layer.trainable = block >= depth - blocks
