"""Grad-CAM for SmartECG's Keras networks: which part of the network's input made it choose a class.

Grad-CAM (Selvaraju et al., 2017) weighs the feature maps of a convolution layer by how much the
class score rises with each of them and keeps the positive part. The last layer with a spatial
output at the network's top level is used unless one is named. The class score is the log of the
class's probability, which does not saturate on confident pages as the probability does.

On a 1-D network over the 12 lead signals, the feature maps mix the leads after the first layer,
so the map over time is shared out among the leads by gradient x input per lead. A network whose
convolutions are all inside a nested model (EfficientNet, transfer learning) has no such layer
at its top level; there gradient x input over the whole input is used and the result says so.

The map is over the network's input tensor; :mod:`automl.explain` takes it back to the page.
"""
from __future__ import annotations

import automl._tf_env  # noqa: F401  (before TensorFlow is imported)

from dataclasses import dataclass

import numpy as np

__all__ = ["TensorAttribution", "gradcam", "last_spatial_layer"]


@dataclass
class TensorAttribution:
    """Non-negative evidence for one class over the input tensor (its shape without the channel)."""

    heat: np.ndarray
    method: str  # "gradcam" or "saliency" (gradient x input)
    layer: str  # the layer the maps came from, or "input"


def last_spatial_layer(network, name: str | None = None):
    """The named layer, or the output of the network's last convolution block; None if it has none.

    The block's output is the last convolution's activation: the convolution and the layers
    after it that keep its shape (batch norm, activation, residual addition), before pooling.
    Only top-level layers count (a nested model's layers cannot be reached from its inputs).
    """
    if name is not None:
        try:
            return network.get_layer(name)
        except ValueError:
            names = [layer.name for layer in network.layers]
            raise ValueError(f"the network has no layer {name!r}; its layers: {', '.join(names)}") from None
    found, shape = None, None
    for layer in network.layers:
        output = tuple(getattr(getattr(layer, "output", None), "shape", ()) or ())
        if type(layer).__name__.startswith("Conv") and len(output) in (3, 4):
            found, shape = layer, output
        elif found is not None and output == shape:
            found = layer  # same maps, after normalisation or activation
        elif found is not None:
            shape = None  # pooled or reshaped: later layers of this shape belong to no convolution
    return found


def gradcam(network, x: np.ndarray, class_index: int, layer: str | None = None) -> TensorAttribution:
    """Evidence for ``class_index`` over one input ``x`` of shape (1, *input_shape)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
    target = last_spatial_layer(network, layer)
    if target is None:
        return TensorAttribution(_saliency(network, x, class_index), "saliency", "input")
    probe = _probe(network, target)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        maps, proba = probe(x, training=False)
        score = tf.math.log(proba[:, class_index] + 1e-9)
    grads = tape.gradient(score, maps)
    input_grads = tape.gradient(score, x) if len(x.shape) == 3 else None
    del tape
    maps, grads = maps.numpy()[0], grads.numpy()[0]
    spatial = tuple(range(maps.ndim - 1))
    weights = grads.mean(axis=spatial)
    cam = np.maximum((maps * weights).sum(axis=-1), 0.0)
    shape = tuple(x.shape[1:-1]) if len(x.shape) == 4 else (int(x.shape[1]),)
    cam = _resize(cam, shape)
    if input_grads is not None:  # 1-D over leads: share each moment's evidence among the leads
        per_lead = np.abs(input_grads.numpy()[0] * x.numpy()[0])  # (length, leads)
        per_lead = _smooth_time(per_lead, max(1, shape[0] // maps.shape[0]))  # one feature map step
        per_lead = per_lead / np.maximum(per_lead.sum(axis=1, keepdims=True), 1e-12)
        cam = cam[:, None] * per_lead
    return TensorAttribution(cam, "gradcam", target.name)


def _saliency(network, x, class_index: int) -> np.ndarray:
    """|gradient x input|, summed over channels for images (leads stay separate for signals)."""
    import tensorflow as tf

    probe = _probe(network)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.math.log(probe(x, training=False)[:, class_index] + 1e-9)
    heat = np.abs(tape.gradient(score, x).numpy()[0] * x.numpy()[0])
    return heat.sum(axis=-1) if heat.ndim == 3 else heat


def _probe(network, target=None):
    """A model from the network's one input tensor to its class probabilities, preceded by
    ``target``'s output when a layer is given: ``[maps, probabilities]``.

    AutoKeras builds its networks on lists of one input and one output, so its ``output`` is a
    list where Optuna's is a tensor; a model over such lists nests them in what it returns, so
    the single tensors are taken out first. Every call of the network goes through here.
    """
    import keras

    proba = _single(network.outputs, "output")
    return keras.Model(_single(network.inputs, "input"), proba if target is None else [target.output, proba])


def _single(tensors, what: str):
    """The one tensor of a list of one (a plain tensor is returned as it is)."""
    if not isinstance(tensors, (list, tuple)):
        return tensors
    if len(tensors) != 1:
        raise ValueError(f"Grad-CAM needs a network with one {what}; this one has {len(tensors)}")
    return tensors[0]


def _resize(cam: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear resampling of a coarse map to the input's size (pixel centres aligned)."""
    from scipy import ndimage

    coords = [(np.arange(n) + 0.5) * (m / n) - 0.5 for n, m in zip(shape, cam.shape)]
    grid = np.meshgrid(*coords, indexing="ij")
    return ndimage.map_coordinates(cam.astype(float), grid, order=1, mode="nearest")


def _smooth_time(values: np.ndarray, width: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.uniform_filter1d(values, size=width, axis=0, mode="nearest") if width > 1 else values
