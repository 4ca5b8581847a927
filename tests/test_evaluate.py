"""Holdout metrics and plots on hand-checkable numbers."""
import numpy as np
import pytest

from automl.evaluate import evaluate, plot_confusion, plot_roc

CLASSES = ["A", "B", "C"]


def onehot(labels, confidence=0.8):
    proba = np.full((len(labels), 3), (1 - confidence) / 2)
    for i, label in enumerate(labels):
        proba[i, CLASSES.index(label)] = confidence
    return proba


def test_perfect_predictions_score_one_everywhere():
    y = ["A", "B", "C", "A"]
    ev = evaluate(y, onehot(y), CLASSES)
    assert ev.metrics["accuracy"] == ev.metrics["macro_f1"] == ev.metrics["roc_auc"] == 1.0
    assert ev.confusion.tolist() == [[2, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_a_class_never_predicted_counts_as_f1_zero_in_the_macro_average():
    y = ["A", "A", "B", "C"]
    ev = evaluate(y, onehot(["A", "A", "A", "C"]), CLASSES)
    assert ev.metrics["f1_B"] == 0.0
    assert ev.metrics["macro_f1"] == pytest.approx((0.8 + 0.0 + 1.0) / 3)
    assert ev.metrics["accuracy"] == 0.75
    assert ev.confusion[1].tolist() == [1, 0, 0]


def test_roc_auc_is_nan_without_every_class_in_the_holdout():
    y = ["A", "B"]
    assert np.isnan(evaluate(y, onehot(y), CLASSES).metrics["roc_auc"])


def test_labels_outside_the_models_classes_are_refused():
    with pytest.raises(ValueError, match="not among the model's classes"):
        evaluate(["Z"], onehot(["A"]), CLASSES)


def test_plots_are_written(tmp_path):
    y = ["A", "B", "C", "A", "B", "C"]
    ev = evaluate(y, onehot(["A", "B", "B", "A", "C", "C"]), CLASSES)
    for path in (plot_confusion(ev, tmp_path / "cm.png"), plot_roc(ev, tmp_path / "roc.png")):
        assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
