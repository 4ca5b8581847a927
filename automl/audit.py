"""Shortcut audit: can the class be predicted from how a page looks rather than from its traces?

In the public dataset, page size nearly gives COVID away, the layout follows the hospital and so
the class (every Normal page is 3x4), and some headers print the device's diagnosis. If the class
can be told from page metadata, from the layout or from the header alone, any model trained on
those pages can score well without looking at a heartbeat, and the report must say so.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.atomic import write_text

__all__ = ["AUDITS", "AuditResult", "HEADER_FEATURES", "LayoutAudit", "METADATA_FEATURES", "header_audit",
           "header_profiles", "layout_audit", "load_audits", "metadata_audit", "save_audits"]

AUDITS = ("shortcut_audit", "layout_audit", "header_audit")  # keys of a data report's summary

METADATA_FEATURES = ("width", "height", "aspect", "log_file_size", "colour_mode")
HEADER_FEATURES = ("header ink per row", "header ink per column")
_HEADER_SHAPE = (24, 160)  # (rows, columns) every header crop is resized to
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
    return _classifier_audit(_metadata_matrix(frame), frame["label"].to_numpy(), METADATA_FEATURES,
                             _metadata_message, seed, n_permutations)


def header_audit(labels, profiles: np.ndarray, *, seed: int = 0, n_permutations: int = 49) -> AuditResult:
    """The same test on the page header alone (``profiles`` from :func:`header_profiles`).

    Models never see the header (it is outside the lead area); this says whether the data would
    reward one that did, e.g. through a printed diagnosis or a hospital's own title.
    """
    return _classifier_audit(np.asarray(profiles), np.asarray(labels), HEADER_FEATURES, _header_message,
                             seed, n_permutations)


def header_profiles(paths, lead_tops) -> np.ndarray:
    """Ink per row and per column of each page above its lead area (``lead_tops`` in source px).

    Profiles rather than pixels: printed text moves with page size and patient fields, while its
    length and place still show. Pages are read small (the header's layout, not its letters).
    """
    from PIL import Image

    from features.imageio import load_image_and_size

    rows = []
    for path, top in zip(paths, lead_tops):
        grey, (_, height) = load_image_and_size(path, min_side=400)
        cut = max(1, int(top * grey.shape[0] / height))
        crop = Image.fromarray(np.uint8(np.clip(grey[:cut], 0, 1) * 255)).resize(_HEADER_SHAPE[::-1], Image.BILINEAR)
        ink = 1.0 - np.asarray(crop, dtype=np.float32) / 255.0
        rows.append(np.concatenate([ink.sum(axis=0), ink.sum(axis=1)]))
    return np.array(rows, dtype=np.float32).reshape(len(rows), sum(_HEADER_SHAPE))


def _classifier_audit(x: np.ndarray, labels: np.ndarray, features: tuple[str, ...], describe, seed: int,
                      n_permutations: int) -> AuditResult:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, permutation_test_score

    classes, counts = np.unique(labels, return_counts=True)
    chance = 1.0 / max(len(classes), 1)
    if len(classes) < 2 or counts.min() < 2:
        return AuditResult(features, len(labels), float("nan"), chance, float("nan"), {}, False,
                           "shortcut audit skipped: it needs two classes with at least two images each")
    cv = StratifiedKFold(n_splits=int(min(5, counts.min())), shuffle=True, random_state=seed)
    model = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=seed, n_jobs=1)
    score, _, p_value = permutation_test_score(
        model, x, labels, cv=cv, scoring="balanced_accuracy", n_permutations=n_permutations,
        random_state=seed, n_jobs=1,
    )
    predicted = cross_val_predict(model, x, labels, cv=cv)
    recall = {str(c): float(np.mean(predicted[labels == c] == c)) for c in classes}
    flagged = bool(p_value <= _MAX_P_VALUE and score - chance >= _MIN_GAIN_OVER_CHANCE)
    return AuditResult(features, len(labels), float(score), chance, float(p_value), recall,
                       flagged, describe(flagged, _figures(score, chance, p_value), recall))


def _metadata_matrix(frame: pd.DataFrame) -> np.ndarray:
    modes = {m: i for i, m in enumerate(sorted(set(frame["mode"])))}
    width = frame["width"].to_numpy(float)
    height = frame["height"].to_numpy(float)
    return np.column_stack([
        width, height, width / height, np.log(frame["bytes"].to_numpy(float)),
        frame["mode"].map(modes).to_numpy(float),
    ])


def _figures(score: float, chance: float, p_value: float) -> str:
    return f"balanced accuracy {score:.2f} vs chance {chance:.2f}, permutation p={p_value:.3f}"


def _classifier_message(subject: str, inputs: str, advice: str):
    """The message maker of a classifier audit on ``inputs`` (what ``subject`` is made of)."""

    def describe(flagged: bool, figures: str, recall: dict) -> str:
        if not flagged:
            return f"OK: {subject} alone does not predict the class ({figures})."
        worst = max(recall, key=recall.get)
        return (f"WARNING: {subject} predicts the class. A classifier on {inputs} alone reaches {figures}; "
                f"most predictable: {worst} (recall {recall[worst]:.2f}). {advice}")

    return describe


_metadata_message = _classifier_message(
    "page metadata", "width, height, aspect, file size and colour mode",
    "A model trained on these pages can score well without reading the ECG: crop pages to the lead area and "
    "compare results per page size before trusting any score.")
_header_message = _classifier_message(
    "the page header", "the ink of the header",
    "SmartECG never shows the header to a model, but any other pipeline trained on these pages may read a "
    "printed diagnosis or a hospital's title instead of the ECG.")


@dataclass(frozen=True)
class LayoutAudit:
    """How the page layout (3x4/6x2, rhythm strip, grid) goes with the class."""

    n_images: int
    table: dict[str, dict[str, int]]  # layout -> class -> pages
    cramers_v: float  # 0: layout says nothing about the class; 1: it gives the class away
    p_value: float
    flagged: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


_MIN_CRAMERS_V = 0.2  # a moderate association: enough for a model to lean on


def layout_audit(labels, layouts, *, seed: int = 0, n_permutations: int = 999) -> LayoutAudit:
    """Test whether the layout predicts the class: chi-square association, permutation p-value.

    The layout is categorical and takes few values, so an association measure (Cramer's V) says
    more than a classifier's accuracy: a layout seen in only some classes is a shortcut even when
    it covers few pages.
    """
    labels, layouts = np.asarray(labels, dtype=object), np.asarray(layouts, dtype=object)
    table = pd.crosstab(pd.Series(layouts, name="layout"), pd.Series(labels, name="class"))
    as_dict = {str(k): {str(c): int(v) for c, v in row.items()} for k, row in table.iterrows()}
    if table.shape[0] < 2 or table.shape[1] < 2:
        only = "one layout" if table.shape[0] < 2 else "one class"
        return LayoutAudit(len(labels), as_dict, 0.0, 1.0, False,
                           f"OK: {only} in the data, so the layout cannot predict the class here.")
    _, layout_codes = np.unique(layouts, return_inverse=True)
    _, class_codes = np.unique(labels, return_inverse=True)
    observed = _chi_square(layout_codes, class_codes)
    rng = np.random.default_rng(seed)
    permuted = np.array([_chi_square(layout_codes, rng.permutation(class_codes)) for _ in range(n_permutations)])
    p_value = float((1 + np.sum(permuted >= observed - 1e-9)) / (n_permutations + 1))
    v = float(np.sqrt(observed / (len(labels) * (min(table.shape) - 1))))
    flagged = p_value <= _MAX_P_VALUE and v >= _MIN_CRAMERS_V
    return LayoutAudit(len(labels), as_dict, v, p_value, bool(flagged), _layout_message(flagged, v, p_value, table))


def _chi_square(rows: np.ndarray, columns: np.ndarray) -> float:
    counts = np.zeros((rows.max() + 1, columns.max() + 1))
    np.add.at(counts, (rows, columns), 1)
    expected = counts.sum(axis=1, keepdims=True) * counts.sum(axis=0, keepdims=True) / counts.sum()
    return float(np.sum((counts - expected) ** 2 / np.where(expected > 0, expected, 1)))


def _layout_message(flagged: bool, v: float, p_value: float, table: pd.DataFrame) -> str:
    figures = f"Cramer's V {v:.2f}, permutation p={p_value:.3f}"
    if not flagged:
        return f"OK: the page layout does not predict the class ({figures})."
    absent = [f"{layout} never in {', '.join(str(c) for c in row.index[row == 0])}"
              for layout, row in table.iterrows() if (row == 0).any()]
    return (
        f"WARNING: the page layout predicts the class ({figures}"
        + (f"; {'; '.join(absent)}" if absent else "") + "). A model can score well by recognising the layout "
        "(and so the hospital) instead of reading the ECG: compare its metrics per layout, and test on "
        "another hospital's pages before trusting any score."
    )


# --- the data report's audits, kept for the searches on the same data ---------------------------

def _audit_file(data_hash: str) -> Path:
    from features.cache import cache_root

    return cache_root() / "audits" / f"{data_hash}.json"


def save_audits(data_hash: str, summary: dict) -> None:
    """Keep a data report's audit results, so model cards of searches on the same data show them."""
    path = _audit_file(data_hash)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps({key: summary[key] for key in AUDITS}, default=str))
    except OSError:  # a read-only cache only costs the model card its audit section
        pass


def load_audits(data_hash: str) -> dict | None:
    """The audits of the data report made on data of this hash, or None when none was made."""
    try:
        return json.loads(_audit_file(data_hash).read_text())
    except (OSError, ValueError):
        return None
