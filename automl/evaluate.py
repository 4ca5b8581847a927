"""Scores of a model on a labelled set: the numbers a search compares, and the plots people read.

Every candidate of a search is scored here on the same holdout. Metrics are macro averages over
the classes the model knows (a class with no holdout page counts as F1 0, never silently
dropped), so one rare class done badly shows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Evaluation", "evaluate", "plot_confusion", "plot_roc", "score_probabilities"]


@dataclass
class Evaluation:
    """Metrics of one model on one labelled set.

    ``metrics`` is flat, ready for MLflow: accuracy, balanced_accuracy, macro_precision,
    macro_recall, macro_f1, roc_auc (one-vs-rest, macro; NaN when the set lacks a class), ece
    (expected calibration error of the top class, :mod:`automl.calibration`) and ``f1_<class>``
    per class.
    """

    classes: list[str]
    y_true: np.ndarray
    proba: np.ndarray
    metrics: dict[str, float]
    confusion: np.ndarray  # rows: true class, columns: predicted class, in ``classes`` order
    # kind ("layout", "size") -> group -> {n, accuracy, balanced_accuracy, macro_f1}
    by_group: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def score(self, metric: str) -> float:
        """The value of ``metric`` (a spec metric name); NaN scores rank below everything."""
        return float(self.metrics[metric])

    def group_metrics(self) -> dict[str, float]:
        """``by_<kind>.<group>.<metric>``, flat for MLflow: e.g. ``by_layout.6x2.macro_f1``."""
        return {f"by_{kind}.{group}.{name}": value for kind, groups in self.by_group.items()
                for group, values in groups.items() for name, value in values.items()}

    def group_lines(self) -> list[str]:
        """One line per group, for a terminal or a model card."""
        return [f"{kind} {group}: n={int(v['n'])}, accuracy {v['accuracy']:.3f}, macro-F1 {v['macro_f1']:.3f}"
                for kind, groups in self.by_group.items() for group, v in groups.items()]

    def summary(self) -> str:
        m = self.metrics
        return (f"accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
                f"ROC-AUC {m['roc_auc']:.3f} on {len(self.y_true)} pages")


def evaluate(y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str],
             groups: Mapping[str, Sequence[str]] | None = None) -> Evaluation:
    """Score class probabilities ``proba`` (n, len(classes)) against labels ``y_true``.

    ``groups`` maps a kind (``layout``, ``size``) to each page's group; each group is scored on
    its own too, so a model that only works on one layout or page size shows it.
    """
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                                 precision_recall_fscore_support, roc_auc_score)

    from automl.calibration import expected_calibration_error

    classes = list(classes)
    y_true = np.asarray(y_true, dtype=object)
    proba = np.asarray(proba, dtype=float)
    if proba.shape != (len(y_true), len(classes)):
        raise ValueError(f"expected probabilities of shape ({len(y_true)}, {len(classes)}), got {proba.shape}")
    unknown = sorted(set(y_true) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's classes {classes}")
    y_pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "roc_auc": _roc_auc(y_true, proba, classes, roc_auc_score),
        "ece": expected_calibration_error(np.array([classes.index(c) for c in y_true], dtype=int), proba),
    }
    metrics.update({f"f1_{c}": float(v) for c, v in zip(classes, f1)})
    confusion = confusion_matrix(y_true, y_pred, labels=classes)
    by_group = {kind: _per_group(y_true, y_pred, np.asarray(members, dtype=object))
                for kind, members in (groups or {}).items()}
    return Evaluation(classes, y_true, proba, metrics, confusion, by_group)


def _per_group(y_true: np.ndarray, y_pred: np.ndarray, members: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics within each group; macro averages over the classes present in that group."""
    from sklearn.metrics import f1_score

    if len(members) != len(y_true):
        raise ValueError(f"expected a group for each of {len(y_true)} pages, got {len(members)}")
    out = {}
    for group in sorted(set(members)):
        inside = members == group
        truth, predicted = y_true[inside], y_pred[inside]
        present = sorted(set(truth))
        out[str(group)] = {
            "n": float(inside.sum()),
            "accuracy": float(np.mean(truth == predicted)),
            # Mean recall over the classes present (sklearn's warns of predicted classes absent here).
            "balanced_accuracy": float(np.mean([np.mean(predicted[truth == c] == c) for c in present])),
            "macro_f1": float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0)),
        }
    return out


def _roc_auc(y_true, proba, classes, roc_auc_score) -> float:
    present = [i for i, c in enumerate(classes) if (y_true == c).any()]
    if len(present) < len(classes) or len(present) < 2:
        return float("nan")  # one-vs-rest needs positives and negatives for every class
    # Rows must sum to 1 for sklearn's multi-class check; a model's float noise must not fail it.
    p = np.clip(proba, 0, None)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    if len(classes) == 2:
        return float(roc_auc_score(y_true == classes[1], p[:, 1]))
    return float(roc_auc_score(y_true, p, labels=classes, multi_class="ovr", average="macro"))


def plot_confusion(evaluation: Evaluation, path: str | Path, title: str = "Holdout confusion matrix") -> Path:
    """Counts, with each row's share in brackets; true classes down, predicted across."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = evaluation.confusion
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(evaluation.classes)
    fig, ax = plt.subplots(figsize=(1.4 * n + 2, 1.2 * n + 1.5))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{counts[i, j]}\n({shares[i, j]:.0%})", ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), evaluation.classes, rotation=30, ha="right")
    ax.set_yticks(range(n), evaluation.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_roc(evaluation: Evaluation, path: str | Path, title: str = "Holdout ROC, one class vs rest") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc, roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, name in enumerate(evaluation.classes):
        positive = evaluation.y_true == name
        if positive.all() or not positive.any():
            continue  # no curve without both positives and negatives
        fpr, tpr, _ = roc_curve(positive, evaluation.proba[:, i])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.2f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def score_probabilities(metric: str, y_true: np.ndarray, proba: np.ndarray) -> float:
    """The spec's ``metric`` of class-index labels against probabilities (columns = class indices)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    predicted = proba.argmax(axis=1)
    if metric == "macro_f1":
        return float(f1_score(y_true, predicted, labels=np.arange(proba.shape[1]), average="macro", zero_division=0))
    if metric == "accuracy":
        return float(accuracy_score(y_true, predicted))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y_true, predicted))
    if metric == "roc_auc":
        if len(np.unique(y_true)) < proba.shape[1]:
            return float("nan")
        p = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
        return float(roc_auc_score(y_true, p, multi_class="ovr", average="macro", labels=np.arange(proba.shape[1])))
    raise ValueError(f"unknown metric {metric!r}")
