"""The deep architectures the Optuna engine searches over, written layer by layer.

Every builder takes the page tensor's shape (``(H, W, 1)`` images with ink = 1, or ``(L, 12)``
lead signals) and returns an uncompiled Keras model ending in a softmax over the classes:

* ``cnn``: plain convolution blocks (conv, batch norm, ReLU, max pool).
* ``resnet``: residual blocks with 1x1 projections where the shape changes.
* ``vgg``: stages of two 3x3 convolutions and a max pool.
* ``efficientnet``: ``keras.applications.EfficientNetB0`` trained from scratch.
* ``transfer``: a pretrained backbone, frozen first, then fine-tuned. By default SmartECG's own
  (``backbone="leads"`` or ``"signals"``, made by ``smartecg pretrain`` on generated pages:
  :mod:`automl.engines.backbones`); ``backbone="imagenet"``: EfficientNetB0 with ImageNet weights
  from the Keras cache or a ``weights_dir``. Nothing is ever downloaded (:class:`WeightsUnavailable`).
* ``conv1d``: 1-D convolutions over the 12 lead signals.
"""
from __future__ import annotations

import automl._tf_env  # noqa: F401  (before TensorFlow is imported)

import os
from pathlib import Path

__all__ = ["FAMILIES", "IMAGE_FAMILIES", "WeightsUnavailable", "backbone_layer", "build_network", "imagenet_weights",
           "require_weights"]

IMAGE_FAMILIES = ("cnn", "resnet", "vgg", "efficientnet", "transfer")
FAMILIES = (*IMAGE_FAMILIES, "conv1d")
# keras.applications' file name for EfficientNetB0 without its classification top.
_EFFICIENTNET_WEIGHTS = "efficientnetb0_notop.h5"
_MIN_APPLICATION_SIDE = 32  # keras.applications refuse smaller inputs


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for and are not on this machine."""


def build_network(family: str, input_shape: tuple[int, ...], n_classes: int, *, width: int = 16, depth: int = 3,
                  dropout: float = 0.3, weights_dir: str | os.PathLike | None = None, backbone: str = "imagenet"):
    """An uncompiled Keras model for ``family``; see the module docstring for the families.

    ``backbone`` (``transfer`` only): ``"leads"`` or ``"signals"`` for SmartECG's pretrained
    backbone of that view, ``"imagenet"`` for EfficientNetB0's ImageNet weights."""
    import keras
    from keras import layers

    if family not in FAMILIES:
        raise ValueError(f"unknown network family {family!r}; choose from {', '.join(FAMILIES)}")
    signals = family == "conv1d" or (family == "transfer" and backbone == "signals")
    if signals != (len(input_shape) == 2):
        raise ValueError(f"{family} needs {'(length, leads) signals' if signals else '(H, W, 1) pages'}, "
                         f"got input shape {input_shape}")
    inputs = keras.Input(shape=input_shape)
    if family == "conv1d":
        x = _conv1d_body(inputs, width, depth)
    elif family == "transfer" and backbone != "imagenet":
        x = _pretrained_body(inputs, backbone, weights_dir)
    elif family in ("efficientnet", "transfer"):
        x = _efficientnet_body(inputs, pretrained=family == "transfer", weights_dir=weights_dir)
    else:
        x = {"cnn": _cnn_body, "resnet": _resnet_body, "vgg": _vgg_body}[family](inputs, width, depth)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name=family)


def _conv_bn_relu(x, filters: int, kernel=3, strides=1):
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _cnn_body(x, width: int, depth: int):
    from keras import layers

    for level in range(depth):
        x = _conv_bn_relu(x, width * 2 ** level)
        x = layers.MaxPooling2D(2, padding="same")(x)
    return layers.GlobalAveragePooling2D()(x)


def _resnet_body(x, width: int, depth: int):
    from keras import layers

    x = _conv_bn_relu(x, width)
    for level in range(depth):
        filters, strides = width * 2 ** level, 1 if level == 0 else 2
        shortcut = x
        y = _conv_bn_relu(x, filters, strides=strides)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if strides != 1 or shortcut.shape[-1] != filters:  # match the shape the block changed
            shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut)
            shortcut = layers.BatchNormalization()(shortcut)
        x = layers.ReLU()(layers.Add()([y, shortcut]))
    return layers.GlobalAveragePooling2D()(x)


def _vgg_body(x, width: int, depth: int):
    from keras import layers

    for level in range(depth):
        x = _conv_bn_relu(x, width * 2 ** level)
        x = _conv_bn_relu(x, width * 2 ** level)
        x = layers.MaxPooling2D(2, padding="same")(x)
    return layers.GlobalAveragePooling2D()(x)


def _conv1d_body(x, width: int, depth: int):
    from keras import layers

    for level in range(depth):
        x = layers.Conv1D(width * 2 ** level, 7, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling1D(2, padding="same")(x)
    return layers.GlobalAveragePooling1D()(x)


def _efficientnet_body(x, *, pretrained: bool, weights_dir):
    import keras
    from keras import layers

    height, width = x.shape[1], x.shape[2]
    if min(height, width) < _MIN_APPLICATION_SIDE:
        raise ValueError(f"EfficientNetB0 needs inputs of at least {_MIN_APPLICATION_SIDE} px a side, got {height}x{width}")
    # The applications expect RGB in 0-255 with paper light: turn ink = 1 into a grey page.
    rgb = layers.Concatenate()([x, x, x])
    rgb = layers.Rescaling(-255.0, offset=255.0)(rgb)
    weights = str(imagenet_weights(weights_dir)) if pretrained else None
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=weights, input_shape=(height, width, 3),
                                                 pooling="avg")
    backbone.trainable = not pretrained  # transfer: frozen first; the trainer unfreezes it to fine-tune
    return backbone(rgb, training=False if pretrained else None)


def _pretrained_body(x, view: str, weights_dir):
    from automl.engines.backbones import load_backbone

    require_weights(view, weights_dir)  # its absence in one line, as WeightsUnavailable
    backbone, found = load_backbone(view, weights_dir)
    if tuple(backbone.input_shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(f"the pretrained {view} backbone in {found.folder} reads {backbone.input_shape[1:]} tensors, "
                         f"not {tuple(x.shape[1:])}")
    backbone.trainable = False  # frozen first; fine-tuning unfreezes its last blocks
    return backbone(x, training=False)  # batch norm keeps the statistics of the generated pages


def require_weights(backbone: str, weights_dir=None) -> None:
    """Raise :class:`WeightsUnavailable` (one line) unless ``transfer`` from ``backbone`` can be built
    here: checked before a trial makes its tensors."""
    from features.pretrained import BackboneUnavailable, require_backbone

    if backbone == "imagenet":
        imagenet_weights(weights_dir)  # raises WeightsUnavailable itself
        return
    try:
        require_backbone(backbone, weights_dir)
    except BackboneUnavailable as exc:
        raise WeightsUnavailable(str(exc)) from None


def backbone_layer(network):
    """The pretrained backbone inside a ``transfer`` network, or None."""
    return next((layer for layer in network.layers if layer.name.startswith("smartecg_")), None)


def imagenet_weights(weights_dir: str | os.PathLike | None = None) -> Path:
    """The EfficientNetB0 ImageNet weights file, from ``weights_dir`` or the Keras cache; never downloaded."""
    places = [Path(weights_dir)] if weights_dir else []
    places.append(Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models")
    for place in places:
        if (place / _EFFICIENTNET_WEIGHTS).is_file():
            return place / _EFFICIENTNET_WEIGHTS
    raise WeightsUnavailable(
        f"ImageNet weights {_EFFICIENTNET_WEIGHTS} not found in {' or '.join(str(p) for p in places)}; this machine "
        "cannot download them: copy the file there or pass --weights-dir DIR (other architectures go on meanwhile)")
