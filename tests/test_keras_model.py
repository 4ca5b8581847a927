"""KerasClassifier: two-class heads and networks with layers from outside Keras, loaded fresh."""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # imports TensorFlow (seconds)


def _network(units: int, activation: str):
    import keras
    from autokeras.keras_layers import CastToFloat32  # registered only once autokeras is imported

    inputs = keras.Input((8, 12, 1))
    hidden = keras.layers.Flatten()(CastToFloat32()(inputs))
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(hidden))


def test_one_sigmoid_output_gives_two_columns():
    from automl.engines.keras_model import KerasClassifier

    proba = KerasClassifier(_network(1, "sigmoid"), 2).predict_proba(np.random.rand(3, 8, 12, 1))
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_autokeras_layers_load_in_a_fresh_process(tmp_path):
    from automl.engines.keras_model import KerasClassifier

    path = tmp_path / "classifier.pkl"
    path.write_bytes(pickle.dumps(KerasClassifier(_network(3, "softmax"), 3)))
    code = ("import pickle, sys, numpy as np; c = pickle.load(open(sys.argv[1], 'rb')); "
            "print(round(float(c.predict_proba(np.ones((2, 8, 12, 1))).sum()), 4))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "2.0"
