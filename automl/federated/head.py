"""The classifier a federation trains: a linear or one-hidden-layer softmax head over page features.

Its weights are a short list of arrays, which is all that federated averaging needs to move; the
training is plain numpy (Adam on mini-batches, class weights, L2, and FedProx's proximal term) so
that a site and the pooled baseline run exactly the same code. Once trained, :func:`as_pipeline`
hands the weights to scikit-learn estimators, so the final model is an ordinary pipeline that
SmartECG's registry, explanations and ONNX export already know.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HeadSpec", "Scaling", "as_pipeline", "head_proba", "initial_weights", "train_locally"]

_EPS = 1e-12


@dataclass(frozen=True)
class HeadSpec:
    """What the head is and how a site trains it in one round."""

    hidden: int = 0  # 0: softmax regression; n: one ReLU layer of n units
    epochs: int = 5  # local passes over a site's pages per round
    batch_size: int = 32
    learning_rate: float = 0.01
    l2: float = 1e-4
    # FedProx's proximal weight (0 is FedAvg). Sites whose pages differ (layouts, devices) drift apart
    # under FedAvg; on generated sites of three layout mixes 0.1 closed the gap to pooled training
    # (drawn apart from the test's sites; see docs/federated.md).
    mu: float = 0.1

    @property
    def kind(self) -> str:
        return f"mlp({self.hidden})" if self.hidden else "linear"


@dataclass(frozen=True)
class Scaling:
    """Feature means and standard deviations, from every site's counts, sums and sums of squares.

    A missing value (NaN) is imputed with the mean, i.e. 0 once scaled.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_sums(cls, count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> "Scaling":
        count = np.maximum(np.asarray(count, dtype=float), 1.0)
        mean = np.asarray(total, dtype=float) / count
        variance = np.maximum(np.asarray(squares, dtype=float) / count - mean ** 2, 0.0)
        std = np.sqrt(variance)
        return cls(mean, np.where(std > 1e-8, std, 1.0))

    def apply(self, X: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(X, dtype=float) - self.mean) / self.std
        return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)


def feature_sums(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature: how many values are present, their sum and their sum of squares (NaN left out)."""
    X = np.asarray(X, dtype=float)
    present = np.isfinite(X)
    values = np.where(present, X, 0.0)
    return present.sum(axis=0).astype(float), values.sum(axis=0), (values ** 2).sum(axis=0)


def initial_weights(n_features: int, n_classes: int, spec: HeadSpec, seed: int = 0) -> list[np.ndarray]:
    """Glorot-uniform weights and zero biases: [W, b] (linear) or [W1, b1, W2, b2] (MLP)."""
    rng = np.random.default_rng(seed)
    sizes = [n_features, *([spec.hidden] if spec.hidden else []), n_classes]
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights += [rng.uniform(-limit, limit, size=(fan_in, fan_out)), np.zeros(fan_out)]
    return weights


def head_proba(weights: list[np.ndarray], Z: np.ndarray) -> np.ndarray:
    """Class probabilities of scaled features ``Z``."""
    return _softmax(_forward(weights, Z)[-1])


def train_locally(weights: list[np.ndarray], Z: np.ndarray, y: np.ndarray, class_weight: np.ndarray,
                  spec: HeadSpec, seed: int) -> list[np.ndarray]:
    """``spec.epochs`` passes of Adam over scaled features ``Z`` and class indices ``y``, from ``weights``.

    The loss is the class-weighted cross-entropy plus ``l2``, plus FedProx's
    ``mu / 2 * ||w - w_start||^2`` which keeps a site near the global model it started from.
    """
    start = [w.copy() for w in weights]
    current = [w.copy() for w in weights]
    moments = [np.zeros_like(w) for w in current]
    squares = [np.zeros_like(w) for w in current]
    rng = np.random.default_rng(seed)
    sample_weight = np.asarray(class_weight, dtype=float)[y]
    step = 0
    for _ in range(spec.epochs):
        order = rng.permutation(len(y))
        for begin in range(0, len(order), spec.batch_size):
            batch = order[begin:begin + spec.batch_size]
            grads = _gradients(current, Z[batch], y[batch], sample_weight[batch])
            step += 1
            for i, grad in enumerate(grads):
                if i % 2 == 0:  # matrices only: biases are not shrunk
                    grad = grad + spec.l2 * current[i]
                if spec.mu:
                    grad = grad + spec.mu * (current[i] - start[i])
                moments[i] = 0.9 * moments[i] + 0.1 * grad
                squares[i] = 0.999 * squares[i] + 0.001 * grad ** 2
                corrected = moments[i] / (1 - 0.9 ** step)
                current[i] -= spec.learning_rate * corrected / (np.sqrt(squares[i] / (1 - 0.999 ** step)) + 1e-8)
    return current


def as_pipeline(weights: list[np.ndarray], scaling: Scaling, classes: list[str], spec: HeadSpec):
    """The trained head as a scikit-learn pipeline: scaler -> impute 0 -> logistic regression or MLP.

    The estimators are fitted on a few placeholder rows (so scikit-learn sets up its own
    attributes), then given the federation's numbers; the result computes exactly ``head_proba``.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import warnings

    from sklearn.exceptions import ConvergenceWarning

    n_features, n_classes = len(scaling.mean), len(classes)
    placeholder = np.tile(np.eye(n_classes, n_features), (2, 1))
    labels = np.asarray(list(classes) * 2, dtype=object)
    scaler = StandardScaler().fit(placeholder)
    scaler.mean_, scaler.scale_, scaler.var_ = scaling.mean.copy(), scaling.std.copy(), scaling.std ** 2
    imputer = SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True).fit(placeholder)
    with warnings.catch_warnings():  # one iteration on placeholders is all it is meant to do
        warnings.simplefilter("ignore", ConvergenceWarning)
        head = _placeholder_head(placeholder, labels, classes, spec)
    order = _column_order(head.classes_, classes)
    if spec.hidden:
        head.coefs_ = [weights[0].copy(), weights[2][:, order].copy()]
        head.intercepts_ = [weights[1].copy(), weights[3][order].copy()]
    else:
        head.coef_ = weights[0].T[order].copy()
        head.intercept_ = weights[1][order].copy()
    return make_pipeline(scaler, imputer, head)


def _placeholder_head(placeholder: np.ndarray, labels: np.ndarray, classes: list[str], spec: HeadSpec):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if spec.hidden:
        head = MLPClassifier(hidden_layer_sizes=(spec.hidden,), max_iter=1)
        return head.partial_fit(placeholder, labels, classes=np.asarray(classes, dtype=object))
    return LogisticRegression(max_iter=1).fit(placeholder, labels)


def _column_order(fitted_classes, classes: list[str]) -> np.ndarray:
    """For each of the estimator's classes, its index among ``classes`` (scikit-learn sorts them)."""
    return np.asarray([list(classes).index(str(c)) for c in fitted_classes], dtype=int)


def _forward(weights: list[np.ndarray], Z: np.ndarray) -> list[np.ndarray]:
    """Each layer's output, the last being the logits."""
    outputs = [np.asarray(Z, dtype=float)]
    for i in range(0, len(weights), 2):
        z = outputs[-1] @ weights[i] + weights[i + 1]
        outputs.append(np.maximum(z, 0.0) if i + 2 < len(weights) else z)
    return outputs


def _gradients(weights: list[np.ndarray], Z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> list[np.ndarray]:
    """Gradients of the sample-weighted mean cross-entropy, by back-propagation."""
    outputs = _forward(weights, Z)
    delta = _softmax(outputs[-1])
    delta[np.arange(len(y)), y] -= 1.0
    delta *= (sample_weight / max(sample_weight.sum(), _EPS))[:, None]
    grads: list[np.ndarray] = [None] * len(weights)  # type: ignore[list-item]
    for i in range(len(weights) - 2, -1, -2):
        grads[i], grads[i + 1] = outputs[i // 2].T @ delta, delta.sum(axis=0)
        if i:
            delta = (delta @ weights[i].T) * (outputs[i // 2] > 0)
    return grads


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
