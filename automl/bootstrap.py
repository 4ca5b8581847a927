"""Accuracy and macro-F1 of answers with a 95% percentile bootstrap interval over the pages.

One place for the interval every honest figure carries (bench/_scoring.py's slices and
leave-one-site-out's sites): a class with ten test pages moves macro-F1 a lot, and the interval
says how much.
"""
from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_scores"]


def bootstrap_scores(truth, predicted, *, resamples: int = 2000, rng: np.random.Generator | None = None,
                     seed: int = 0) -> dict:
    """``{accuracy, macro_f1, accuracy_ci, macro_f1_ci}`` of predicted against true class names.

    Macro-F1 averages over the classes present in ``truth`` (a class the test pages lack is not
    scored, so a site without MI is not marked down for it). Each resample draws the pages with
    replacement; ``rng`` (else a generator from ``seed``) draws them, so callers scoring several
    slices in turn can share one stream.
    """
    from sklearn.metrics import f1_score

    truth = np.asarray(truth, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    if len(truth) == 0:
        raise ValueError("no pages to score")
    present = sorted(set(truth))
    rng = np.random.default_rng(seed) if rng is None else rng

    def stats(idx):
        t, p = truth[idx], predicted[idx]
        return float((t == p).mean()), float(f1_score(t, p, labels=present, average="macro", zero_division=0))

    accuracy, macro_f1 = stats(np.arange(len(truth)))
    draws = np.array([stats(rng.integers(0, len(truth), len(truth))) for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return {"accuracy": accuracy, "macro_f1": macro_f1,
            "accuracy_ci": [float(low[0]), float(high[0])], "macro_f1_ci": [float(low[1]), float(high[1])]}
