"""A cross-engine ensemble: greedy ensemble selection with replacement over out-of-fold probabilities.

Caruana et al., "Ensemble selection from libraries of models" (ICML 2004), as auto-sklearn and
AutoGluon use it: start from the best candidate, then repeatedly add (with replacement) the
candidate whose addition most improves the metric of the averaged out-of-fold probabilities;
the weights are how often each was picked. Candidates are combined on the training pages their
out-of-fold (or validation) probabilities share, so a pipeline cross-validated on every page and
a network validated on a fifth of them would meet on that fifth.

The result is an :class:`~automl.model.ECGModel` like any other (it loads through the pyfunc,
is calibrated, explained and registered the same way): its classifier is a :class:`SoftVote`
of the members' fitted classifiers over the search's feature vectors. Members are the
candidates that read those features and have out-of-fold probabilities on every training page
(the portfolio's and TPOT's); networks, which read their own tensors and are validated on one
share of the pages, do not join yet.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Selection", "SoftVote", "build_ensemble", "greedy_selection"]


@dataclass
class Selection:
    weights: np.ndarray  # one per candidate, summing to 1 (zeros for those never picked)
    score: float  # the metric of the weighted out-of-fold probabilities
    history: list  # the score after each round


def greedy_selection(oof: list[np.ndarray], y: np.ndarray, score, rounds: int = 25) -> Selection:
    """Weights over ``oof`` (each (n, classes) on the same pages) maximising ``score(y, proba)``."""
    if not oof:
        raise ValueError("greedy_selection needs at least one candidate")
    counts = np.zeros(len(oof))
    total = np.zeros_like(oof[0], dtype=float)
    history: list[float] = []
    best_score = -np.inf
    for _ in range(rounds):
        n = counts.sum()
        trial_scores = [score(y, (total + p) / (n + 1)) for p in oof]
        pick = int(np.nanargmax(trial_scores))  # ties: the earlier (better-ranked) candidate
        if history and trial_scores[pick] < best_score - 1e-12:
            break  # adding anything makes it worse: the ensemble so far is the answer
        counts[pick] += 1
        total += oof[pick]
        best_score = max(best_score, trial_scores[pick])
        history.append(float(trial_scores[pick]))
    weights = counts / counts.sum()
    return Selection(weights, float(score(y, total / counts.sum())), history)


class SoftVote:
    """Weighted mean of fitted classifiers' probabilities over one feature matrix.

    ``columns[i]`` maps classifier i's ``predict_proba`` columns into the ensemble's classes;
    ``classes_`` are class indices, as the search's pipelines have them.
    """

    def __init__(self, classifiers: list, weights, columns: list[np.ndarray], n_classes: int) -> None:
        self.classifiers = list(classifiers)
        self.weights = np.asarray(weights, dtype=float)
        self.columns = [np.asarray(c, dtype=int) for c in columns]
        self.classes_ = np.arange(n_classes)

    def predict_proba(self, X) -> np.ndarray:
        out = np.zeros((len(X), len(self.classes_)))
        for classifier, weight, columns in zip(self.classifiers, self.weights, self.columns):
            raw = np.asarray(classifier.predict_proba(X), dtype=float)
            out[:, columns] += weight * raw
        return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)


def build_ensemble(candidates: list, training, *, rounds: int = 25, pool: int = 10):
    """The ensemble candidate of ``candidates`` (those that can join: same features as the search,
    out-of-fold probabilities on every training page), or None when fewer than two can or the
    selection keeps a single one. Returns ``(Candidate, Selection, members)``."""
    from automl.calibration import CalibrationSet
    from automl.engines.base import Candidate
    from automl.evaluate import score_probabilities
    from automl.model import ECGModel

    n = len(training.y)
    joinable = [c for c in candidates if c.calibration is not None and c.calibration.pages is not None
                and len(c.calibration.pages) == n and c.model.reads(training.features)]
    joinable.sort(key=lambda c: -_finite(score_probabilities(training.metric, c.calibration.y, c.calibration.proba)))
    joinable = joinable[:pool]
    if len(joinable) < 2:
        return None
    in_page_order = [np.argsort(c.calibration.pages) for c in joinable]
    oof = [c.calibration.proba[order] for c, order in zip(joinable, in_page_order)]
    y = joinable[0].calibration.y[in_page_order[0]]
    selection = greedy_selection(oof, y, lambda t, p: score_probabilities(training.metric, t, p), rounds=rounds)
    picked = [i for i, w in enumerate(selection.weights) if w > 0]
    if len(picked) < 2:
        return None
    members = [(joinable[i], float(selection.weights[i])) for i in picked]
    vote = SoftVote([c.model.classifier for c, _ in members], [w for _, w in members],
                    [c.model._columns for c, _ in members], len(training.classes))
    description = " + ".join(f"{w:.2f} x {c.engine} {c.description}" for c, w in members)
    params = {f"member_{k}": f"{w:.3f} {c.engine}: {c.description}"[:500] for k, (c, w) in enumerate(members)}
    model = ECGModel(training.features, vote, training.classes, engine="ensemble", description=description,
                     params=params)
    proba = sum(w * oof[i] for i, w in zip(picked, selection.weights[picked]))
    calibration = CalibrationSet(proba, y, "out-of-fold predictions on the training pages (the members' mix)",
                                 pages=np.arange(n))
    return Candidate("ensemble", model, selection.score, params, None, description, calibration), selection, members


def _finite(x: float) -> float:
    return x if np.isfinite(x) else -np.inf
