"""ECGModel: raw page images in, class probabilities out, with all preprocessing inside.

Whatever engine found it, a model is used the same way: ``predict_proba`` takes paths, raw bytes
or image arrays and returns one row of probabilities per page, in the order of ``classes``. The
same object is what MLflow stores (as a pyfunc, see :mod:`automl.pyfunc`), so a pulled model
needs nothing but SmartECG installed.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["ECGModel"]


class ECGModel:
    """A fitted classifier over page features, with the feature extraction that feeds it.

    Parameters
    ----------
    features : transformer
        Turns a sequence of pages (paths, bytes or arrays) into a numeric matrix, e.g.
        :class:`features.handcrafted.PageFeatures`. It must need no fitting on data.
    classifier : fitted estimator
        ``predict_proba`` on the feature matrix; its ``classes_`` are class names or indices
        into ``classes``.
    classes : sequence of str
        Class names, the column order of :meth:`predict_proba`.
    engine, description : str
        Where it came from and what it is (pipeline text), for model cards and the registry.

    Attributes set after fitting, by the search:

    calibrator : object or None
        Maps the classifier's probabilities to calibrated ones (:mod:`automl.calibration`);
        ``predict_proba`` returns calibrated probabilities when it is set.
    uncertain_below : float or None
        A page whose top probability is below this is flagged "uncertain - refer for review".
    gate : features.gate.PageGate or None
        Fitted on the training pages (:mod:`features.gate`): which way up a page is, and whether it is
        like the pages the model learnt from. Without one, :meth:`check_pages` still refuses
        unreadable and blank pages.
    holdout_model : ECGModel or None
        Set when the search refitted the model on every page, holdout included
        (:mod:`automl.refit`): the same recipe fitted without the holdout, which its holdout
        figures are of and which champion/challenger re-scores.
    """

    calibrator = None  # class-level defaults, so models pickled before these existed still load
    uncertain_below = None
    holdout_model = None
    gate = None

    def __init__(self, features, classifier, classes, *, engine: str = "", description: str = "",
                 params: dict[str, Any] | None = None) -> None:
        self.features = features
        self.classifier = classifier
        self.classes = [str(c) for c in classes]
        self.engine = engine
        self.description = description
        self.params = dict(params or {})
        self._columns = _column_order(getattr(classifier, "classes_", None), self.classes)

    def predict_proba(self, pages) -> np.ndarray:
        """(n_pages, n_classes) float64 probabilities; rows sum to 1."""
        from features.extract import as_sources

        sources = as_sources(pages)
        if not sources:
            return np.zeros((0, len(self.classes)))
        vectors = self.features.transform(sources)
        return self.proba_from_features(vectors)

    def proba_from_features(self, vectors: np.ndarray) -> np.ndarray:
        """Probabilities from a feature matrix already made by ``features`` (searches reuse theirs);
        calibrated when the model has a calibrator."""
        proba = self.uncalibrated_proba(vectors)
        return self.calibrator.transform(proba) if self.calibrator is not None and len(proba) else proba

    def uncalibrated_proba(self, vectors: np.ndarray) -> np.ndarray:
        """The classifier's own probabilities of a feature matrix, in ``classes`` order."""
        raw = np.asarray(self.classifier.predict_proba(vectors), dtype=float)
        proba = np.zeros((len(raw), len(self.classes)))
        proba[:, self._columns] = raw
        return proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)

    def uncertain(self, proba: np.ndarray, checks=None) -> np.ndarray:
        """Per page: is the top probability below ``uncertain_below``, or (given the gate's
        ``checks``) is the page unlike the training pages? (all False without either)"""
        proba = np.asarray(proba, dtype=float)
        flagged = np.zeros(len(proba), dtype=bool)
        if self.uncertain_below is not None and len(proba):
            flagged = np.nan_to_num(proba.max(axis=1), nan=0.0) < self.uncertain_below
        if checks is not None:
            flagged |= np.array([check.unlike_training for check in checks], dtype=bool)
        return flagged

    def check_pages(self, pages) -> list:
        """Per page a :class:`features.gate.PageCheck`: read, turned (its ``source`` is the page the
        right way round) or refused with the reason. Nothing here raises for a bad page."""
        from features.extract import as_sources
        from features.gate import PageGate

        gate = self.gate if self.gate is not None else PageGate()
        sources = as_sources(pages)
        if len(sources) < 2:
            return [gate.check(source) for source in sources]
        # Threads: decoding releases the GIL. The standard library's pool, so that an export's light
        # runtime, which runs this very code, needs no joblib.
        with ThreadPoolExecutor(max_workers=min(len(sources), os.cpu_count() or 1)) as pool:
            return list(pool.map(gate.check, sources))

    def predict_checked(self, pages) -> tuple[list, np.ndarray]:
        """(the gate's checks, probabilities) of the pages, through the gate: refused pages get a
        row of NaN, turned ones are read the right way round."""
        checks = self.check_pages(pages)
        proba = np.full((len(checks), len(self.classes)), np.nan)
        readable = [i for i, check in enumerate(checks) if check.readable]
        if readable:
            proba[readable] = self.predict_proba([checks[i].source for i in readable])
        return checks, proba

    def reads(self, features) -> bool:
        """Whether the model reads the feature vectors ``features`` makes (a search's own, say)."""
        mine = self.features
        return type(mine) is type(features) and hasattr(mine, "get_params") and mine.get_params() == features.get_params()

    @property
    def without_holdout(self) -> "ECGModel":
        """The model that never saw its search's holdout pages: its twin when refitted on them, else itself."""
        return self.holdout_model if self.holdout_model is not None else self

    @property
    def is_network(self) -> bool:
        """Whether the classifier is a Keras network (Grad-CAM and temperature scaling apply)."""
        return hasattr(self.classifier, "layer_modules")

    def predict(self, pages) -> np.ndarray:
        """The most probable class name of each page."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(pages).argmax(axis=1)]

    def __repr__(self) -> str:
        return f"ECGModel(engine={self.engine!r}, classes={self.classes}, {self.description or type(self.classifier).__name__})"


def _column_order(classifier_classes, classes: list[str]) -> np.ndarray:
    """Where each of the classifier's ``classes_`` goes among ``classes``."""
    if classifier_classes is None:
        return np.arange(len(classes))
    order = []
    for c in classifier_classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= int(c) < len(classes):
                raise ValueError(f"classifier class index {c} is outside the {len(classes)} classes")
            order.append(int(c))
        elif str(c) in classes:
            order.append(classes.index(str(c)))
        else:
            raise ValueError(f"classifier class {c!r} is not among {classes}")
    return np.asarray(order, dtype=int)
