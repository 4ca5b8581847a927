"""A trained Keras network as a scikit-learn-style classifier, so that it fits inside an ECGModel.

:class:`~automl.model.ECGModel` pairs a page transformer with a classifier that has
``predict_proba`` and ``classes_``. Deep engines pair :class:`features.tensors.PageTensors` with
this wrapper, and the registry, the pyfunc and ``smartecg predict`` treat the result like any
other model. It pickles as the network's weights and architecture only (no optimizer state), so
a pulled model loads for inference in a fresh process; layers from outside Keras (AutoKeras's
``CastToFloat32``) are found again by importing the modules that define them before loading.
"""
from __future__ import annotations

import automl._tf_env  # noqa: F401  (before TensorFlow is imported)

import importlib
import io
import os
import warnings
import zipfile
from typing import Any

import numpy as np

__all__ = ["KerasClassifier"]


class KerasClassifier:
    """``predict_proba`` over page tensors with a trained network whose last layer is a softmax.

    ``classes_`` are indices into the ECGModel's classes (the network's output order). A network
    with one sigmoid output (a two-class head) gives the probability of class 1.
    """

    def __init__(self, network, n_classes: int, *, batch_size: int = 32, description: str = "") -> None:
        self.network = network
        self.classes_ = np.arange(int(n_classes))
        self.batch_size = int(batch_size)
        self.description = description

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if len(X) == 0:
            return np.zeros((0, len(self.classes_)))
        proba = np.asarray(self.network.predict(X, batch_size=self.batch_size, verbose=0), dtype=float)
        if proba.shape[1] == 1 and len(self.classes_) == 2:
            proba = np.hstack([1.0 - proba, proba])
        return proba

    def layer_modules(self) -> list[str]:
        """Modules outside Keras that define layers of the network (e.g. AutoKeras's)."""
        return _layer_modules(self.network)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["network"] = _network_bytes(self.network)
        state["layer_modules"] = self.layer_modules()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for module in state.pop("layer_modules", ()):
            _import_layer_module(module)
        state["network"] = _network_from_bytes(state["network"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"KerasClassifier({self.description or self.network.name})"


def _layer_modules(network) -> list[str]:
    """Modules outside Keras that define layers of ``network`` (Keras finds such classes only once
    their module has registered them, so a fresh process must import them before loading)."""
    modules: set[str] = set()
    stack = list(network.layers)
    while stack:
        layer = stack.pop()
        module = type(layer).__module__
        if module.split(".")[0] != "keras":
            modules.add(module)
        stack.extend(getattr(layer, "layers", ()))  # nested models (Keras applications) have their own
    return sorted(modules)


def _import_layer_module(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ImportError(f"this model's network uses layers from {module!r}: install {package} to load it "
                          f"({exc})") from exc


def _network_bytes(network) -> bytes:
    """The network as a ``.keras`` archive in memory, without optimizer state (inference only)."""
    import tempfile

    import keras

    inference = keras.models.clone_model(network)
    inference.set_weights(network.get_weights())
    with tempfile.TemporaryDirectory(prefix="smartecg-keras-") as tmp:
        path = os.path.join(tmp, "network.keras")
        inference.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def _network_from_bytes(blob: bytes):
    import tempfile

    import keras

    if not zipfile.is_zipfile(io.BytesIO(blob)):
        raise ValueError("not a Keras network archive: the model file is damaged or from another program")
    with tempfile.TemporaryDirectory(prefix="smartecg-keras-") as tmp:
        path = os.path.join(tmp, "network.keras")
        with open(path, "wb") as handle:
            handle.write(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.models.load_model(path, compile=False)
