"""Training one network on page tensors: tf.data input, augmentation, per-epoch validation, deadline.

Shared by the deep engines' workers. The validation score of the spec's metric is computed after
every epoch (with scikit-learn, on the validation pages) and handed to ``on_epoch``, which is
where Optuna's pruner looks; the best epoch's weights are kept. Training stops early, cleanly,
when the next epoch would not end before the deadline.
"""
from __future__ import annotations

import automl._tf_env  # noqa: F401  (before TensorFlow is imported)

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from automl.evaluate import score_probabilities  # noqa: F401  (its home moved; kept importable here)

__all__ = ["EpochReport", "TrainingResult", "balanced_class_weights", "configure_tensorflow", "score_probabilities",
           "train_network"]


@dataclass
class EpochReport:
    epoch: int
    loss: float
    val_loss: float
    val_score: float
    seconds: float


@dataclass
class TrainingResult:
    best_score: float
    best_epoch: int
    epochs: list[EpochReport] = field(default_factory=list)
    stopped_by_deadline: bool = False
    stopped_early: bool = False  # no better validation score for ``patience`` epochs


def configure_tensorflow(seed: int, threads: int = 2) -> None:
    """Seeds and a CPU thread pool sized for a 2-core machine; call before building any model."""
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started: the pool is set for this process
        pass
    keras.utils.set_random_seed(seed)


def train_network(network, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
                  metric: str, epochs: int, batch_size: int = 16, learning_rate: float = 1e-3,
                  class_weights: bool = True, augment: Callable[[np.ndarray], np.ndarray] | None = None,
                  fine_tune_after: int | None = None, unfreeze: Callable[[object], None] | None = None,
                  fine_tune_factor: float = 0.1, patience: int | None = None, seed: int = 0,
                  deadline: float = float("inf"), on_epoch: Callable[[EpochReport], None] | None = None
                  ) -> TrainingResult:
    """Fit ``network`` (uncompiled) and leave it with its best epoch's weights.

    ``augment`` maps a batch of training pages to an augmented batch (numpy, run inside tf.data).
    ``fine_tune_after``: for a frozen pretrained backbone, the epoch after which ``unfreeze(network)``
    runs (default: every layer trains) and training goes on at ``fine_tune_factor`` times the
    learning rate. ``patience``: stop after this many epochs without a better validation score
    (None: never). ``deadline`` is a ``time.time()`` value. ``on_epoch`` may raise (Optuna's
    pruning does); the best weights so far are restored first.
    """
    import keras
    import tensorflow as tf

    n_classes = network.output_shape[-1]
    train = tf.data.Dataset.from_tensor_slices((x_train.astype(np.float32), y_train.astype(np.int32))).cache()
    train = train.shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augment is not None:
        def _augment(pages, labels):
            out = tf.numpy_function(lambda b: augment(b).astype(np.float32), [pages], tf.float32)
            return tf.ensure_shape(out, pages.shape), labels
        train = train.map(_augment, num_parallel_calls=1)
    train = train.prefetch(tf.data.AUTOTUNE)
    weights = balanced_class_weights(y_train, n_classes) if class_weights else None
    _compile(network, learning_rate)

    result = TrainingResult(best_score=float("-inf"), best_epoch=-1)
    best_weights = None
    for epoch in range(epochs):
        if fine_tune_after is not None and epoch == fine_tune_after:
            if unfreeze is not None:
                unfreeze(network)
            else:
                for layer in network.layers:
                    layer.trainable = True
            _compile(network, learning_rate * fine_tune_factor)
        started = time.time()
        history = network.fit(train, epochs=1, class_weight=weights, verbose=0)
        proba = network.predict(x_val.astype(np.float32), batch_size=64, verbose=0)
        val_loss = float(keras.losses.sparse_categorical_crossentropy(y_val, proba).numpy().mean())
        score = score_probabilities(metric, y_val, proba)
        report = EpochReport(epoch, float(history.history["loss"][-1]), val_loss, score, time.time() - started)
        result.epochs.append(report)
        if np.isfinite(score) and score > result.best_score:
            result.best_score, result.best_epoch, best_weights = score, epoch, network.get_weights()
        try:
            if on_epoch is not None:
                on_epoch(report)
        except BaseException:
            if best_weights is not None:
                network.set_weights(best_weights)
            raise
        if time.time() + report.seconds * 1.2 > deadline:  # the next epoch would overrun the slice
            result.stopped_by_deadline = epoch + 1 < epochs
            break
        # Frozen epochs before fine-tuning are not counted against it: tuning gets its own chance.
        since = max(result.best_epoch, (fine_tune_after or 0) - 1)
        if patience is not None and epoch - since >= patience and epoch + 1 < epochs:
            result.stopped_early = True
            break
    if best_weights is not None:
        network.set_weights(best_weights)
    return result


def _compile(network, learning_rate: float) -> None:
    import keras

    network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")


def balanced_class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Keras ``class_weight`` that gives every class present the same total weight (MI is about
    4% of real pages); a class with no training page gets 0."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(y) / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}
