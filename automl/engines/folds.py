"""The folds every engine's out-of-fold probabilities come from, and the routine that makes them.

Candidates are ranked, calibrated and joined into the ensemble on out-of-fold probabilities, so
every engine makes them on the same splits (:func:`selection_folds`) and the same way
(:func:`out_of_fold`: folds side by side on every core, each single-threaded).
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["SELECTION_SEED_OFFSET", "fit_fold", "fold_count", "out_of_fold", "selection_folds", "validation_split"]

# Added to the search's seed for the folds candidates are ranked on: an engine that searched on
# the seed's own folds (TPOT) must not have its winner scored on the splits it was chosen on.
SELECTION_SEED_OFFSET = 7919


def fold_count(y: np.ndarray, folds: int) -> int:
    """``folds``, but no more than the rarest class has pages (and at least two)."""
    return max(2, min(int(folds), int(np.bincount(y).min())))


def selection_folds(y: np.ndarray, seed: int, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The stratified splits every engine's out-of-fold probabilities come from.

    Shared by all engines, so candidates are ranked (and joined into an ensemble) on the same
    splits, and drawn apart from the folds an engine searched on. ``folds`` is capped by the
    rarest class's pages."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(fold_count(y, folds), shuffle=True, random_state=seed + SELECTION_SEED_OFFSET)
    return list(splitter.split(np.zeros(len(y)), y))


def validation_split(y: np.ndarray, share: float, seed: int, engine: str = "this engine"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation pages of a network's trials: stratified, about
    ``share`` of the pages, at least one validation page of every class.

    ``engine`` names who asks, in the one-line refusal when a class has a single page."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    present = int((counts > 0).sum())
    if (counts[counts > 0] < 2).any():
        raise ValueError(f"{engine} needs at least two training pages of each class (one to learn from, "
                         f"one to score trials on); page counts per class: {counts.tolist()}")
    n_val = min(max(present, round(share * len(y))), len(y) - present)
    train, val = train_test_split(np.arange(len(y)), test_size=n_val, stratify=y, random_state=seed)
    return np.sort(train), np.sort(val)


def out_of_fold(make, X: np.ndarray, y: np.ndarray, n_classes: int, splits) -> np.ndarray:
    """Each page's probabilities from the fold model not fitted on it; folds on every core.

    Threads, not processes (no pool to start, no data to copy): scikit-learn's fits release the
    GIL in their compiled loops. Each fold is held to one OpenMP thread (a per-thread setting,
    so set in each worker thread) and BLAS to one for the whole call."""
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    from automl.core_use import available_cores

    jobs = min(len(splits), available_cores())
    with threadpool_limits(limits=1):
        results = Parallel(n_jobs=jobs, prefer="threads")(delayed(fit_fold)(make(), X, y, train, test)
                                                          for train, test in splits)
    oof = np.zeros((len(y), n_classes))
    for (train, test), (classes, proba) in zip(splits, results):
        oof[np.ix_(test, classes)] = proba
    return oof


def fit_fold(model, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray):
    """Fit on ``train``, probabilities of ``test``; single-threaded: with two OpenMP threads
    per fit, gradient boosting on a machine whose other core is busy took 9x longer (44 s
    against 5 s for 880 pages, measured)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), warnings.catch_warnings():  # convergence notes on small folds
        warnings.simplefilter("ignore")
        model.fit(X[train], y[train])
        proba = model.predict_proba(X[test]) if len(test) else np.zeros((0, len(model.classes_)))
        return np.asarray(model.classes_, dtype=int), proba
