"""Grad-CAM on networks built on lists of one input and one output, as AutoKeras builds them."""
from __future__ import annotations

import numpy as np
import pytest


def _twin_networks(convolution: bool):
    """The same layers as a plain network (as Optuna builds it) and as one on lists of one (AutoKeras)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 24, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs) if convolution else inputs
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(hidden))
    return keras.Model(inputs, outputs), keras.Model([inputs], [outputs])


@pytest.mark.parametrize("convolution, method", [(True, "gradcam"), (False, "saliency")])
def test_a_network_on_lists_of_one_gets_the_attribution_of_the_same_plain_network(convolution, method):
    from automl.gradcam import gradcam

    plain, listed = _twin_networks(convolution)
    assert isinstance(listed.output, list) and not isinstance(plain.output, list)
    x = np.random.default_rng(0).random((1, 16, 24, 1), dtype=np.float32)
    found = gradcam(listed, x, 1)
    assert found.method == method and found.heat.shape == (16, 24)
    assert np.isfinite(found.heat).all() and (found.heat >= 0).all() and found.heat.max() > 0
    np.testing.assert_allclose(found.heat, gradcam(plain, x, 1).heat, rtol=1e-5)
