"""A fitted classifier as ONNX graphs, for an export's light runtime (:mod:`automl.export`).

scikit-learn pipelines go through skl2onnx, Keras networks through tf2onnx; a soft-voting ensemble
becomes one graph per member with its weight and the classes it votes for. A part ONNX cannot express fails with one line
naming it (:class:`ExportError`). Features are float32 everywhere in SmartECG, so the graphs
take float32: the trees compare on the very thresholds scikit-learn fitted on float32 features.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["ExportError", "Graph", "classifier_graphs"]

# Opsets onnxruntime 1.17+ runs; ai.onnx.ml 3 holds the tree ensembles' current form.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = "features"


class ExportError(ValueError):
    """A part of a model that ONNX (or the light runtime) cannot carry; the message names it."""


@dataclass(frozen=True)
class Graph:
    """One ONNX graph of the classifier: ``probabilities`` is its output of (pages, len(classes)),
    ``classes`` the fitted classifier's ``classes_``; an ensemble member also has its ``weight``
    and ``columns`` (where its classes go among the ensemble's)."""

    name: str
    proto: bytes
    output: str
    classes: list
    weight: float = 1.0
    columns: list[int] | None = None


def classifier_graphs(classifier, n_features: int) -> list[Graph]:
    """The ONNX graphs that give ``classifier.predict_proba`` on (pages, ``n_features``) float32."""
    from automl.ensemble import SoftVote

    if isinstance(classifier, SoftVote):
        return [replace(_graph(member, n_features, f"member_{i}"), weight=float(weight), columns=[int(c) for c in columns])
                for i, (member, weight, columns)
                in enumerate(zip(classifier.classifiers, classifier.weights, classifier.columns))]
    return [_graph(classifier, n_features, "classifier")]


def _graph(estimator, n_features: int, name: str) -> Graph:
    if hasattr(estimator, "layer_modules"):
        return _network_graph(estimator, name)
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    _register_converters()
    _check_steps(estimator)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's deprecations of what skl2onnx reads
            proto = to_onnx(estimator, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                            options={"zipmap": False}, target_opset=TARGET_OPSET)
    except Exception as exc:  # skl2onnx raises many types; the user needs the part and the reason
        raise ExportError(f"{_describe(estimator)} cannot be converted to ONNX: {_first_line(exc)}") from exc
    outputs = [o.name for o in proto.graph.output]
    if "probabilities" not in outputs:
        raise ExportError(f"{_describe(estimator)} gives no probabilities in ONNX (outputs {outputs})")
    return Graph(name, proto.SerializeToString(), "probabilities", [_plain(c) for c in estimator.classes_])


def _network_graph(classifier, name: str) -> Graph:
    """A Keras network (:class:`~automl.engines.keras_model.KerasClassifier`) through tf2onnx, traced
    as it predicts (inference mode: dropout off, batch normalisation's moving averages)."""
    import automl._tf_env  # noqa: F401  (before TensorFlow is imported)

    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    network = classifier.network
    shape = tuple(network.input_shape[1:])
    if network.output_shape[-1] != len(classifier.classes_):
        raise ExportError(f"the network {network.name!r} has {network.output_shape[-1]} outputs for "
                          f"{len(classifier.classes_)} classes (a one-sigmoid head): not exported")
    signature = (tf.TensorSpec((None, *shape), tf.float32, name=INPUT_NAME),)

    def probabilities(x):
        # AutoKeras builds on lists of one input and one output, Optuna's networks on tensors.
        out = network([x] if isinstance(network.input, (list, tuple)) else x, training=False)
        return out[0] if isinstance(out, (list, tuple)) else out

    traced = tf.function(probabilities, input_signature=signature).get_concrete_function()
    try:
        # Frozen first: tf2onnx.convert.from_function leaves tensors the graph captured (AutoKeras's
        # Normalization mean and variance) as extra graph inputs, which nobody feeds.
        frozen = convert_variables_to_constants_v2(traced)
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs], opset=TARGET_OPSET[""])
    except Exception as exc:  # tf2onnx names the TensorFlow op it has no ONNX form for
        raise ExportError(f"the network {network.name!r} cannot be converted to ONNX: {_first_line(exc)}") from exc
    return Graph(name, proto.SerializeToString(), proto.graph.output[0].name, [_plain(c) for c in classifier.classes_])


def _check_steps(estimator) -> None:
    """Name the first step skl2onnx has no converter for, before it fails somewhere inside."""
    from skl2onnx._supported_operators import sklearn_operator_name_map  # type -> converter alias

    for label, step in _steps(estimator):
        if hasattr(step, "steps") or step in (None, "passthrough"):
            continue  # a pipeline is parsed step by step
        if type(step) not in sklearn_operator_name_map:
            raise ExportError(f"{label} ({type(step).__name__}) has no ONNX converter; export a model without it")


def _steps(estimator, label: str = "classifier"):
    """(where, estimator) of the estimator and the ones inside it (pipeline steps, calibrated SVC)."""
    yield label, estimator
    for name, step in getattr(estimator, "steps", []):
        yield from _steps(step, f"step {name!r}")
    for inner in ("estimator", "base_estimator"):
        fitted = getattr(estimator, inner, None)
        if fitted is not None and hasattr(fitted, "fit") and not hasattr(estimator, "steps"):
            yield f"{label}'s {inner}", fitted


def _describe(estimator) -> str:
    steps = getattr(estimator, "steps", None)
    return " -> ".join(type(s).__name__ for _, s in steps) if steps else type(estimator).__name__


def _first_line(exc: Exception) -> str:
    """A converter's error in one line: its first, or its type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


_registered = False


def _register_converters() -> None:
    """TPOT's identity steps as ONNX Identity; histogram gradient boosting with its ints made ints."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from sklearn.ensemble import HistGradientBoostingClassifier

    try:
        from tpot.builtin_modules import Passthrough, SkipTransformer
    except ImportError:
        pass
    else:
        for kind in (Passthrough, SkipTransformer):
            update_registered_converter(kind, f"Tpot{kind.__name__}", _same_shape, _identity)
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier

    update_registered_converter(
        HistGradientBoostingClassifier, "SklearnHistGradientBoostingClassifier",
        calculate_linear_classifier_output_shapes, _integer_attributes(convert_sklearn_random_forest_classifier),
        options={"zipmap": [True, False, "columns"], "nocl": [True, False], "raw_scores": [True, False],
                 "output_class_labels": [False, True]})
    _registered = True


def _same_shape(operator) -> None:
    operator.outputs[0].type = operator.inputs[0].type.__class__(operator.inputs[0].type.shape)


def _identity(scope, operator, container) -> None:
    container.add_node("Identity", operator.inputs[0].full_name, operator.outputs[0].full_name,
                       name=scope.get_unique_operator_name("Identity"))


def _integer_attributes(converter):
    """skl2onnx 1.20 puts Python booleans in an integer attribute of histogram gradient boosting's
    trees (``nodes_missing_value_tracks_true``), which protobuf 6+ (TensorFlow's) refuses."""
    def convert(scope, operator, container):
        add_node = container.add_node

        def add_node_with_ints(*args, **attributes):
            for key, value in attributes.items():
                if isinstance(value, list) and any(isinstance(v, (bool, np.bool_)) for v in value):
                    attributes[key] = [int(v) for v in value]
            return add_node(*args, **attributes)

        container.add_node = add_node_with_ints
        try:
            converter(scope, operator, container)
        finally:
            del container.add_node
    return convert
