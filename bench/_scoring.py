"""Scores of one model's answers on a test folder: the slices an honest evaluation reports, with intervals.

Slices: all 5 classes; the 4 cardiac classes (true COVID pages left out, and the COVID column
dropped so the answer is the likeliest cardiac class); 3x4 pages; 6x2 pages; 3x4 cardiac (the
figure that page layout and printed text cannot explain). Each with accuracy and macro-F1 and a
95% percentile bootstrap interval over the test pages (2,000 resamples), plus per-class F1.
"""
from __future__ import annotations

import numpy as np

from automl.bootstrap import bootstrap_scores

__all__ = ["SLICES", "score_answers", "format_row"]

COVID = "Covid_19"
SLICES = ("all", "cardiac", "3x4", "6x2", "3x4_cardiac")


def score_answers(labels, proba: np.ndarray, classes: list[str], layouts, *, resamples: int = 2000,
                  seed: int = 0) -> dict:
    """``labels`` true class names, ``proba`` (pages, classes) in ``classes`` order, ``layouts``
    per page (features.survey's layout names)."""
    from sklearn.metrics import f1_score

    labels = np.asarray(labels, dtype=object)
    proba = np.asarray(proba, dtype=float)
    layouts = np.asarray([str(x) for x in layouts], dtype=object)
    rng = np.random.default_rng(seed)
    out: dict = {"n": int(len(labels))}
    for name in SLICES:
        keep = np.ones(len(labels), dtype=bool)
        columns = list(range(len(classes)))
        if "cardiac" in name:
            keep &= labels != COVID
            columns = [i for i, c in enumerate(classes) if c != COVID]
        if name.startswith("3x4"):
            keep &= np.array([x.startswith("3x4") for x in layouts])
        if name == "6x2":
            keep &= np.array([x.startswith("6x2") for x in layouts])
        if keep.sum() == 0:
            out[name] = {"n": 0}
            continue
        names = [classes[i] for i in columns]
        truth = labels[keep]
        predicted = np.asarray(names, dtype=object)[proba[keep][:, columns].argmax(axis=1)]
        scores = bootstrap_scores(truth, predicted, resamples=resamples, rng=rng)
        out[name] = {"n": int(keep.sum()), **scores}
        if name == "all":
            present = sorted(set(truth))
            per_class = f1_score(truth, predicted, labels=present, average=None, zero_division=0)
            out["f1"] = {c: float(v) for c, v in zip(present, per_class)}
    return out


def format_row(arm: str, scores: dict, wall: float | None) -> str:
    """``arm  all 0.617 [0.52-0.71] / 0.599 [..]  cardiac ...`` macro-F1 with its interval per slice."""
    cells = []
    for name in SLICES:
        s = scores.get(name, {})
        if not s.get("n"):
            cells.append(f"{name} -")
            continue
        low, high = s["macro_f1_ci"]
        cells.append(f"{name} {s['accuracy']:.3f}/{s['macro_f1']:.3f} [{low:.2f}-{high:.2f}] n={s['n']}")
    return f"{arm:18s} " + " | ".join(cells) + (f" | {wall:.0f} s" if wall is not None else "")
