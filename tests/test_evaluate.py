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


def test_each_layout_is_scored_on_its_own_beside_the_overall_metrics():
    # Right on every 3x4 page, wrong on every 6x2 page: the overall accuracy hides it, the groups show it.
    y = ["A", "B", "C", "A", "B", "C"]
    predicted = ["A", "B", "C", "B", "C", "A"]
    layouts = ["3x4_rhythm"] * 3 + ["6x2"] * 3
    ev = evaluate(y, onehot(predicted), CLASSES, groups={"layout": layouts, "size": ["landscape_ge2000"] * 6})
    assert ev.metrics["accuracy"] == 0.5
    assert ev.by_group["layout"]["3x4_rhythm"] == {"n": 3.0, "accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0}
    assert ev.by_group["layout"]["6x2"]["accuracy"] == ev.by_group["layout"]["6x2"]["macro_f1"] == 0.0
    assert ev.by_group["size"]["landscape_ge2000"]["accuracy"] == 0.5
    flat = ev.group_metrics()
    assert flat["by_layout.6x2.n"] == 3.0 and flat["by_layout.3x4_rhythm.macro_f1"] == 1.0
    assert "layout 6x2: n=3, accuracy 0.000, macro-F1 0.000" in ev.group_lines()


def test_macro_f1_within_a_group_averages_only_the_classes_present_there():
    ev = evaluate(["A", "A", "B"], onehot(["A", "A", "B"]), CLASSES, groups={"layout": ["6x2", "6x2", "3x4"]})
    assert ev.by_group["layout"]["6x2"]["macro_f1"] == 1.0  # C and B absent from the group: not counted as 0


def test_a_group_per_page_is_required():
    with pytest.raises(ValueError, match="a group for each of 2 pages"):
        evaluate(["A", "B"], onehot(["A", "B"]), CLASSES, groups={"layout": ["3x4"]})
