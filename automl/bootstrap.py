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
    truth = np.asarray(truth, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    if len(truth) == 0:
        raise ValueError("no pages to score")
    present = sorted(set(truth))
    names = present + sorted(set(predicted) - set(present))
    code = {name: i for i, name in enumerate(names)}
    t_all = np.array([code[x] for x in truth])
    p_all = np.array([code[x] for x in predicted])
    k = len(names)
    rng = np.random.default_rng(seed) if rng is None else rng

    def stats(idx):  # sklearn's f1_score(labels=present, average="macro", zero_division=0), by counting
        t, p = t_all[idx], p_all[idx]
        confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
        tp = np.diag(confusion)[:len(present)]
        denominator = confusion.sum(axis=1)[:len(present)] + confusion.sum(axis=0)[:len(present)]
        f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        return float((t == p).mean()), float(f1.mean())

    accuracy, macro_f1 = stats(np.arange(len(truth)))
    draws = np.array([stats(rng.integers(0, len(truth), len(truth))) for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return {"accuracy": accuracy, "macro_f1": macro_f1,
            "accuracy_ci": [float(low[0]), float(high[0])], "macro_f1_ci": [float(low[1]), float(high[1])]}
