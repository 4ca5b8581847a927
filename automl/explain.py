"""Why a model gave a page its class: evidence per lead, a one-line summary, an overlay on the page.

:func:`explain` runs Grad-CAM (:mod:`automl.gradcam`; Keras networks) or LIME
(:mod:`automl.lime_leads`; any model) on one page and returns an :class:`Explanation`: the class
and its (calibrated) probability, each lead's share of the evidence (the rhythm strip counts as
lead II), a heat map on the normalised page, and a summary a clinician can read::

    MI 0.91 - most evidence in V2-V4 (anterior leads)

Leads are grouped by territory as cardiologists do: inferior II/III/aVF, lateral I/aVL/V5/V6,
anterior V1-V4. Everything is computed on the page as the model reads it (lead area only), so
the header and margins carry no evidence by construction. :func:`automl.overlay.write_overlay`
draws the heat on the page as a PNG.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from features.pages import LEADS, RHYTHM

__all__ = ["EXPLAIN_METHODS", "TERRITORIES", "Explanation", "evidence_phrase", "explain"]

EXPLAIN_METHODS = ("auto", "gradcam", "lime")
TERRITORIES = {
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
    "anterior": ("V1", "V2", "V3", "V4"),
}
UNCERTAIN = "uncertain - refer for review"
_MOST_EVIDENCE = 0.5  # the summary names the fewest leads holding at least this share ...
_MAX_NAMED = 4  # ... but no more than this many
_STANDS_OUT = 1.2  # times the average lead's share: less than this and a lead is not named


@dataclass
class Explanation:
    """One page's prediction and the evidence behind it.

    ``lead_shares``: each lead's share of the positive evidence (sums to 1; all 0 when the method
    found none). ``lead_weights``: the method's own per-lead numbers (LIME's signed weights;
    Grad-CAM's shares). ``heat``: evidence in [0, 1] on ``page.image``'s grid.
    """

    source: str
    method: str
    class_name: str
    probability: float
    probabilities: dict[str, float]
    uncertain: bool
    lead_shares: dict[str, float]
    lead_weights: dict[str, float]
    page: Any  # features.pages.NormalisedPage
    heat: np.ndarray
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        line = f"{self.class_name} {self.probability:.2f} - {evidence_phrase(self.lead_shares)}"
        return f"{line} - {UNCERTAIN}" if self.uncertain else line

    def to_dict(self) -> dict[str, Any]:
        """What a JSON file or the web API shows (no arrays)."""
        return {"source": self.source, "method": self.method, "class": self.class_name,
                "probability": round(self.probability, 4),
                "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
                "uncertain": self.uncertain, "summary": self.summary,
                "lead_shares": {k: round(v, 4) for k, v in self.lead_shares.items()},
                "lead_weights": {k: round(v, 6) for k, v in self.lead_weights.items()},
                "layout": self.page.layout, "notes": list(self.notes), **self.detail}


def explain(model, source, *, method: str = "auto", class_name: str | None = None, layer: str | None = None,
            lime_samples: int = 300, seed: int = 0, progress: Callable[[int], None] | None = None) -> Explanation:
    """Explain ``model``'s answer for one page (a path, bytes or an image array).

    ``method``: "gradcam" (Keras networks), "lime" (any model) or "auto" (Grad-CAM where it
    applies, else LIME). ``class_name``: the class to explain (default: the predicted one).
    ``layer``: Grad-CAM's layer (default: the last one with feature maps).
    """
    from features.imageio import source_name

    if method not in EXPLAIN_METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose from {', '.join(EXPLAIN_METHODS)}")
    if method == "auto":
        method = "gradcam" if model.is_network else "lime"
    if method == "gradcam" and not model.is_network:
        raise ValueError(f"Grad-CAM needs a network and this model is {model.engine or 'a'} "
                         f"{model.description or type(model.classifier).__name__}; use --method lime")
    if not hasattr(model.features, "normalise"):
        raise ValueError(f"cannot explain a model whose features ({type(model.features).__name__}) "
                         "do not read normalised pages")
    pages = model.features.normalise(source)
    proba = model.proba_from_features(model.features.transform_normalised([pages]))[0]
    index = int(proba.argmax()) if class_name is None else _class_index(model.classes, class_name)
    page = _drawn_page(pages, source)
    notes = list(page.warnings)
    if method == "gradcam":
        shares, weights, heat, detail = _gradcam(model, pages, page, index, layer)
        if detail["gradcam_method"] == "saliency":
            notes.append("no convolution layer at the network's top level (nested backbone): "
                         "gradient x input shown instead of Grad-CAM")
    else:
        from automl.lime_leads import lime_leads

        found = lime_leads(model, pages, index, samples=lime_samples, seed=seed, progress=progress)
        weights = _fold_rhythm(found.weights)
        shares = _shares(np.array([max(weights.get(lead, 0.0), 0.0) for lead in LEADS]))
        heat = _box_heat(page, weights)
        detail = {"lime_samples": found.samples, "lime_fit_r2": round(found.score, 4)}
    return Explanation(
        source=source_name(source), method=method, class_name=model.classes[index], probability=float(proba[index]),
        probabilities={c: float(p) for c, p in zip(model.classes, proba)},
        uncertain=bool(model.uncertain(proba[None])[0]), lead_shares=shares, lead_weights=weights, page=page,
        heat=heat, notes=notes, detail=detail)


def _drawn_page(pages: dict, source):
    """The normalised page heat is drawn on: the smallest the model reads, else one made for it
    (a model that reads only source-resolution sets has no page image of its own)."""
    from features.pages import NormalisedPage, normalise_page

    drawable = [page for page in pages.values() if isinstance(page, NormalisedPage)]
    return min(drawable, key=lambda p: p.image.size) if drawable else normalise_page(source)


def evidence_phrase(shares: dict[str, float]) -> str:
    """"most evidence in V2-V4 (anterior leads)": the fewest leads that stand out and hold half the evidence.

    A lead stands out when its share is clearly above the average lead's; evidence spread evenly
    over the leads points at none.
    """
    total = sum(shares.values())
    ranked = sorted((s / total, lead) for lead, s in shares.items() if s > 0)[::-1] if total > 0 else []
    named, held = [], 0.0
    for share, lead in ranked:
        if len(named) == _MAX_NAMED or held >= _MOST_EVIDENCE or share < _STANDS_OUT / len(LEADS):
            break
        named.append(lead)
        held += share
    if not named:
        return "no lead stands out"
    named.sort(key=LEADS.index)
    territories = [t for t, leads in TERRITORIES.items() if any(lead in leads for lead in named)]
    covered = all(any(lead in TERRITORIES[t] for t in territories) for lead in named)
    where = f" ({' and '.join(territories)} leads)" if covered and 1 <= len(territories) <= 2 else ""
    return f"most evidence in {_lead_list(named)}{where}"


def _lead_list(leads: list[str]) -> str:
    """Leads in LEADS order, consecutive chest leads as a range: "II, aVF, V2-V4"."""
    parts: list[list[str]] = []
    for lead in leads:
        chest = lead.startswith("V")
        if chest and parts and parts[-1][-1].startswith("V") and int(parts[-1][-1][1:]) + 1 == int(lead[1:]):
            parts[-1].append(lead)
        else:
            parts.append([lead])
    return ", ".join(p[0] if len(p) == 1 else (f"{p[0]}, {p[1]}" if len(p) == 2 else f"{p[0]}-{p[-1]}")
                     for p in parts)


def _class_index(classes: list[str], name: str) -> int:
    if name not in classes:
        raise ValueError(f"unknown class {name!r}; the model's classes are {', '.join(classes)}")
    return classes.index(name)


def _gradcam(model, pages: dict, page, index: int, layer: str | None):
    """Grad-CAM over the network's input, taken back to ``page`` (PageTensors reads one size)."""
    from automl.gradcam import gradcam

    tensors = model.features
    found = gradcam(model.classifier.network, tensors.transform_normalised([pages]), index, layer)
    ys, xs, lead = tensors.page_coordinates(page)
    shares = _shares(np.bincount(lead.ravel(), weights=found.heat.ravel(), minlength=len(LEADS)))
    heat = _paint(page.image.shape, ys, xs, found.heat)
    return shares, dict(shares), heat, {"gradcam_method": found.method, "gradcam_layer": found.layer}


def _shares(evidence: np.ndarray) -> dict[str, float]:
    total = float(evidence.sum())
    return {lead: (float(v) / total if total > 0 else 0.0) for lead, v in zip(LEADS, evidence)}


def _fold_rhythm(weights: dict[str, float]) -> dict[str, float]:
    """The rhythm strip is lead II: its weight is added to II's."""
    folded = {lead: weights.get(lead, 0.0) for lead in LEADS}
    folded["II"] += weights.get(RHYTHM, 0.0)
    return folded


def _paint(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values at continuous page points, spread over the page's pixels and scaled to [0, 1]."""
    from scipy import ndimage

    height, width = shape
    iy = np.clip(ys.astype(int).ravel(), 0, height - 1)
    ix = np.clip(xs.astype(int).ravel(), 0, width - 1)
    total = np.zeros(shape)
    count = np.zeros(shape)
    np.add.at(total, (iy, ix), values.ravel())
    np.add.at(count, (iy, ix), 1.0)
    # Points are spaced a tensor pixel apart: spread each over its neighbourhood.
    spacing = max(1.0, np.sqrt(height * width / max(1, len(set(zip(iy.tolist(), ix.tolist()))))))
    total = ndimage.gaussian_filter(total, spacing)
    count = ndimage.gaussian_filter(count, spacing)
    heat = np.where(count > 1e-3 * count.max(), total / np.maximum(count, 1e-12), 0.0)
    top = heat.max()
    return heat / top if top > 0 else heat


def _box_heat(page, weights: dict[str, float]) -> np.ndarray:
    """Each panel filled with its lead's positive weight (the rhythm strip with II's), scaled to [0, 1]."""
    heat = np.zeros(page.image.shape)
    for name, (x0, y0, x1, y1) in page.lead_boxes.items():
        x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
        heat[y0:y1, x0:x1] = max(weights["II" if name == RHYTHM else name], 0.0)
    top = heat.max()
    return heat / top if top > 0 else heat
