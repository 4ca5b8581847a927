"""Shortcut audit: can the class be predicted from page metadata alone?

In the public dataset, page size nearly gives COVID away. If a classifier that sees only width,
height, aspect ratio, file size and colour mode beats chance, any model trained on those pages
can score well without looking at a heartbeat, and the report must say so.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = ["AuditResult", "METADATA_FEATURES", "metadata_audit"]

METADATA_FEATURES = ("width", "height", "aspect", "log_file_size", "colour_mode")
# Flag only what is both statistically clear and large enough to matter.
_MAX_P_VALUE = 0.05
_MIN_GAIN_OVER_CHANCE = 0.10


@dataclass(frozen=True)
class AuditResult:
    features: tuple[str, ...]
    n_images: int
    balanced_accuracy: float
    chance: float
    p_value: float
    per_class_recall: dict[str, float]
    flagged: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def metadata_audit(frame: pd.DataFrame, *, seed: int = 0, n_permutations: int = 49) -> AuditResult:
    """Cross-validate a small random forest on metadata alone and test it against chance.

    ``frame`` is a manifest frame (columns label, width, height, bytes, mode). The p-value comes
    from refitting on label permutations, so it holds for any class balance.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, permutation_test_score

    labels = frame["label"].to_numpy()
    classes, counts = np.unique(labels, return_counts=True)
    chance = 1.0 / max(len(classes), 1)
    if len(classes) < 2 or counts.min() < 2:
        return AuditResult(METADATA_FEATURES, len(frame), float("nan"), chance, float("nan"), {}, False,
                           "shortcut audit skipped: it needs two classes with at least two images each")
    x = _metadata_matrix(frame)
    cv = StratifiedKFold(n_splits=int(min(5, counts.min())), shuffle=True, random_state=seed)
    model = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=seed, n_jobs=1)
    score, _, p_value = permutation_test_score(
        model, x, labels, cv=cv, scoring="balanced_accuracy", n_permutations=n_permutations,
        random_state=seed, n_jobs=1,
    )
    predicted = cross_val_predict(model, x, labels, cv=cv)
    recall = {str(c): float(np.mean(predicted[labels == c] == c)) for c in classes}
    flagged = bool(p_value <= _MAX_P_VALUE and score - chance >= _MIN_GAIN_OVER_CHANCE)
    return AuditResult(METADATA_FEATURES, len(frame), float(score), chance, float(p_value), recall,
                       flagged, _message(flagged, score, chance, p_value, recall))


def _metadata_matrix(frame: pd.DataFrame) -> np.ndarray:
    modes = {m: i for i, m in enumerate(sorted(set(frame["mode"])))}
    width = frame["width"].to_numpy(float)
    height = frame["height"].to_numpy(float)
    return np.column_stack([
        width, height, width / height, np.log(frame["bytes"].to_numpy(float)),
        frame["mode"].map(modes).to_numpy(float),
    ])


def _message(flagged: bool, score: float, chance: float, p_value: float, recall: dict) -> str:
    figures = f"balanced accuracy {score:.2f} vs chance {chance:.2f}, permutation p={p_value:.3f}"
    if not flagged:
        return f"OK: page metadata alone does not predict the class ({figures})."
    worst = max(recall, key=recall.get)
    return (
        f"WARNING: page geometry predicts the class. A classifier on width, height, aspect, file size "
        f"and colour mode alone reaches {figures}; most predictable: {worst} (recall {recall[worst]:.2f}). "
        "A model trained on these pages can score well without reading the ECG: crop pages to the "
        "lead area and compare results per page size before trusting any score."
    )
