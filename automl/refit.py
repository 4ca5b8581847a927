"""The chosen model refitted on every page, holdout included, with its twin kept for comparisons.

A search fits its candidates on the learn pages (train + validation) and keeps the holdout for
the report and for champion/challenger. On a few hundred pages, the 15% left out costs the
chosen model real accuracy: in repeated nested cross-validation on the 306 real training pages,
the same configurations fitted on 85% of each outer training fold scored 0.03-0.035 macro-F1
below their fits on all of it (HistGradientBoosting 0.728 against 0.763, an RBF SVC 0.718
against 0.748). So, as scikit-learn's ``GridSearchCV(refit=True)`` and AutoGluon's ``refit_full``
do, the winner's recipe is fitted once more on every page once the search has chosen it.

The refitted model has seen the holdout, so it is never scored there. Its holdout figures are
those of its *twin*, the same recipe fitted on the learn pages only, which it carries as
:attr:`~automl.model.ECGModel.holdout_model`: champion/challenger re-scores the twin, and the
holdout pages are explained with it. The twin's calibrator (fitted on out-of-fold probabilities
of the learn pages) is kept for the refitted model.

What can be refitted: scikit-learn estimators and pipelines (cloned, then fitted) and the
ensemble's :class:`~automl.ensemble.SoftVote` (each member so). Networks are not: their early
stopping needs validation pages, and a refit would cost a training run.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Refit", "refit_on_every_page"]


@dataclass
class Refit:
    model: object | None  # the refitted ECGModel, its twin as ``holdout_model``; None when not refitted
    seconds: float
    reason: str  # what was done, or why not: one line for the progress output and the run's tags


def refit_on_every_page(model, X: np.ndarray, y: np.ndarray) -> Refit:
    """``model`` (an ECGModel fitted on some of these pages) fitted again on every row of ``X``.

    ``y`` holds class indices into ``model.classes`` (how the search's classifiers are fitted);
    ``X`` is the search's feature matrix, so only models that read those features can be refitted.
    """
    started = time.monotonic()
    if model.is_network:
        return Refit(None, 0.0, "not refitted: networks keep the fit their validation pages stopped")
    try:
        classifier = _refitted(model.classifier, np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64))
    except _CannotRefit as exc:
        return Refit(None, 0.0, f"not refitted: {exc}")
    except Exception as exc:  # the model fitted without the holdout is still a good answer
        return Refit(None, time.monotonic() - started, f"not refitted: the refit failed "
                                                       f"({type(exc).__name__}: {exc})".splitlines()[0][:300])
    refitted = copy.copy(model)  # engine, description, calibrator, threshold and features stay the twin's
    refitted.classifier = classifier
    refitted.holdout_model = model
    seconds = time.monotonic() - started
    return Refit(refitted, seconds, f"refitted on all {len(y)} pages, holdout included, in {seconds:.1f} s; "
                                    "its holdout figures are of the same recipe fitted without the holdout")


class _CannotRefit(Exception):
    pass


def _refitted(classifier, X: np.ndarray, y: np.ndarray):
    from sklearn.base import clone

    from automl.ensemble import SoftVote
    from automl.engines.folds import fit_fold

    if isinstance(classifier, SoftVote):
        return _refitted_vote(classifier, X, y)
    if not hasattr(classifier, "get_params"):
        raise _CannotRefit(f"{type(classifier).__name__} is not a scikit-learn estimator")
    fresh = clone(classifier)
    fitted_classes, _ = fit_fold(fresh, X, y, np.arange(len(y)), np.arange(0))
    if set(fitted_classes) != set(np.asarray(classifier.classes_, dtype=int)):
        raise _CannotRefit("the refit learned other classes than the model")  # its column map would be wrong
    return fresh


def _refitted_vote(vote, X: np.ndarray, y: np.ndarray):
    """Each member refitted, side by side on every core (each single-threaded, as fit_fold is)."""
    from joblib import Parallel, delayed

    from automl.core_use import available_cores
    from automl.ensemble import SoftVote

    jobs = min(len(vote.classifiers), available_cores())
    members = Parallel(n_jobs=jobs, prefer="threads")(delayed(_refitted)(c, X, y) for c in vote.classifiers)
    return SoftVote(members, vote.weights, vote.columns, len(vote.classes_))
