"""What the AutoKeras engine searches: ``ak.ImageClassifier``'s own space, minus downloads.

AutoKeras's image classifier first tries three fixed starts (a small CNN, ResNet50, a pretrained
EfficientNet-B7) and then mutates the best one. Two rules change that here:

- No pretrained weights, ever: they are downloads (nothing but PyPI is reachable, and a model
  must not depend on files fetched at search time). ``pretrained`` is pinned to False for every
  Keras-application block, and the EfficientNet-B7 start, pretrained by definition, is dropped.
- No ``imagenet_size``: it upsamples each page to 224x224 before a ResNet/Xception/EfficientNet,
  about 8x the compute of a 64x96 page on a CPU, for no new information (the page was already
  resampled to the size we chose).

Everything else (block type, depth, filters, normalisation, augmentation, head, optimiser,
learning rate) is AutoKeras's. The names follow AutoKeras's own starts (``image_block_1/...``).
"""
from __future__ import annotations

from typing import Any

__all__ = ["pinned_hyperparameters", "starts", "uses_pretrained_weights"]

_BLOCK = "image_block_1"
_BLOCK_TYPES = ["resnet", "xception", "vanilla", "efficient"]  # as autokeras.blocks.ImageBlock lists them
_APPLICATION_BLOCKS = {"resnet": "res_net_block_1", "xception": "xception_block_1", "efficient": "efficient_net_block_1"}


def starts() -> list[dict[str, Any]]:
    """AutoKeras's starts for image classifiers, without the pretrained one and at page size."""
    from autokeras.tuners.task_specific import IMAGE_CLASSIFIER

    starts = []
    for values in IMAGE_CLASSIFIER:
        if any(name.endswith("/pretrained") and value for name, value in values.items()):
            continue
        starts.append({name: (False if name.endswith("/imagenet_size") else value) for name, value in values.items()})
    return starts


def pinned_hyperparameters():
    """A ``keras_tuner.HyperParameters`` that fixes ``pretrained`` and ``imagenet_size`` to False.

    Registered before AutoKeras builds its space, under the same names and conditions, so the
    blocks read these values and the greedy oracle (which never mutates fixed values) keeps them.
    """
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    with hp.name_scope(_BLOCK):
        # Default "vanilla": keras-tuner builds the default network once to set up the space, and a
        # small CNN builds in well under a second where ResNet50 (AutoKeras's default) takes seconds.
        hp.Choice("block_type", _BLOCK_TYPES, default="vanilla")
        for block_type, block in _APPLICATION_BLOCKS.items():
            with hp.conditional_scope("block_type", [block_type]), hp.name_scope(block):
                hp.Fixed("pretrained", False)
                hp.Fixed("imagenet_size", False)
    return hp


def uses_pretrained_weights(hp) -> bool:
    """Whether a trial's hyperparameters would load ImageNet weights (never built: a download)."""
    return any(name.endswith("/pretrained") and bool(value) and hp.is_active(name) for name, value in hp.values.items())
