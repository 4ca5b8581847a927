"""LIME with one superpixel per lead panel: which leads a model's answer rests on, for any model.

LIME (Ribeiro et al., 2016) switches parts of an input off at random, watches how the class's
probability moves and fits a weighted linear model to those moves; its weights are the parts'
evidence. Here the parts are the lead panels of the normalised page (the 12 leads, and the
rhythm strip when the page has one), and a panel is switched off by drawing it as a flat line at
its baseline (:func:`features.pages.flatten_leads`), the neutral lead. Pages are perturbed after
normalisation, so the page geometry a model reads stays the same on every sample, and the
header never enters. The sampling, the kernel and the weighted ridge fit are the ``lime``
package's (``LimeBase``), with the settings of its image explainer.

Works for any :class:`~automl.model.ECGModel` whose features can read normalised pages
(``PageFeatures`` for TPOT pipelines, ``PageTensors`` for networks).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LeadWeights", "lime_leads"]

_KERNEL_WIDTH = 0.25  # lime's LimeImageExplainer default, over cosine distances


@dataclass
class LeadWeights:
    """Signed evidence per panel for one class, and how well LIME's local linear model fits (R^2)."""

    weights: dict[str, float]
    score: float
    samples: int


def lime_leads(model, pages: dict, class_index: int, *, samples: int = 300, seed: int = 0,
               batch_size: int = 32, progress=None) -> LeadWeights:
    """LIME weights of each panel of ``pages`` (``model.features.normalise(page)``) for ``class_index``.

    ``progress`` is called with the number of samples done after each batch.
    """
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    if samples < 10:
        raise ValueError(f"LIME needs at least 10 samples, got {samples}")
    panels = _panels(pages)
    rng = np.random.default_rng(seed)
    switched_on = rng.integers(0, 2, size=(samples, len(panels)))
    switched_on[0] = 1  # the page itself
    proba = np.empty((samples, len(model.classes)))
    for start in range(0, samples, batch_size):
        batch = switched_on[start:start + batch_size]
        perturbed = []
        for on in batch:
            off = [panel for panel, keep in zip(panels, on) if not keep]
            perturbed.append({size: page.without_leads(off) for size, page in pages.items()})
        proba[start:start + len(batch)] = model.proba_from_features(model.features.transform_normalised(perturbed))
        if progress is not None:
            progress(start + len(batch))
    distances = pairwise_distances(switched_on, switched_on[:1], metric="cosine").ravel()
    explainer = LimeBase(lambda d: np.sqrt(np.exp(-(d ** 2) / _KERNEL_WIDTH ** 2)), random_state=seed)
    _, weights, score, _ = explainer.explain_instance_with_data(switched_on, proba, distances, class_index,
                                                               num_features=len(panels))
    return LeadWeights({panels[i]: float(w) for i, w in weights}, float(score), samples)


def _panels(pages: dict) -> list[str]:
    """Panels found at every size the model reads (the 12 leads, and the rhythm strip if all have it)."""
    names = None
    for page in pages.values():
        found = list(page.lead_boxes)
        names = found if names is None else [n for n in names if n in found]
    return names or []
