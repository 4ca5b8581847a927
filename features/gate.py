"""Is this an ECG page, and which way up? The check every page passes before a model reads it.

A page is **read** as it is, **turned** (a quarter turn, half turn or mirror image: read the
right way round, and said so) or **refused** with the reason (unreadable file, blank page, no
rows of traces and unlike the training pages, or far from anything the model was trained on).

Two parts, both cheap (a 256 px decode, about 10 ms a page):

- what normalisation already measures, with no fitting: the share of the page that is trace ink,
  and whether rows of traces were found (:func:`features.pages.locate_leads`);
- :class:`PageGate`, fitted on a model's own training pages and stored in the model: a classifier
  of the page's eight orientations (learnt from the training pages turned and mirrored all eight
  ways, so no labelled turned page is needed) and a novelty score (mean distance to the nearest
  training pages, over a standardised low-resolution HOG of the whole page: the full space, since
  a PCA fitted on the training pages hides exactly what makes a bar chart unlike them). The score is scaled
  so that 1.0 is the 99th percentile of the training pages' own (leave-one-out) scores: above 1
  the page is unlike the training pages (its answer is flagged uncertain), above
  ``refuse_factor`` it is refused.

The descriptor sees the whole page, header included: it decides only whether and how to read the
page, never the diagnosis, so page layout cannot leak into a class through it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

try:
    from sklearn.base import BaseEstimator
except ImportError:  # an export's light runtime checks pages with a fitted gate and no scikit-learn
    BaseEstimator = object

from features.sets import hog
from features.imageio import ImageReadError, ImageSource, load_image, load_image_and_size, source_name
from features.pages import ink_strength, locate_leads

__all__ = ["ORIENTATIONS", "READ", "REFUSED", "TURNED", "PageCheck", "PageGate", "check_structure",
           "ink_problem", "page_descriptor"]

READ, TURNED, REFUSED = "read", "turned", "refused"

# Each orientation a page can arrive in: how the upright page was turned to give it (on an array),
# how to undo that, and what to tell the user.
_TURNS: dict[str, tuple[Callable, Callable, str]] = {
    "upright": (lambda a: a, lambda a: a, ""),
    "rot90": (lambda a: np.rot90(a, 1), lambda a: np.rot90(a, 3), "a quarter turn anticlockwise"),
    "rot180": (lambda a: np.rot90(a, 2), lambda a: np.rot90(a, 2), "a half turn (upside down)"),
    "rot270": (lambda a: np.rot90(a, 3), lambda a: np.rot90(a, 1), "a quarter turn clockwise"),
    "mirror": (lambda a: a[:, ::-1], lambda a: a[:, ::-1], "a mirror image (left-right)"),
    "flip": (lambda a: a[::-1], lambda a: a[::-1], "a mirror image (top-bottom)"),
    "transpose": (lambda a: np.swapaxes(a, 0, 1), lambda a: np.swapaxes(a, 0, 1),
                  "a mirror image turned a quarter turn"),
    "transverse": (lambda a: np.swapaxes(np.rot90(a, 2), 0, 1), lambda a: np.swapaxes(np.rot90(a, 2), 0, 1),
                   "a mirror image turned three quarters"),
}
ORIENTATIONS = tuple(_TURNS)

_DECODE_SIDE = 256  # px, longer side: enough for the page's layout, cheap to decode (JPEG draft)
_STRUCTURE_SIDE = 512  # the resolution normalisation locates lead rows at
_SQUARE = 64  # the descriptor's image: every orientation squashed to the same square
_INK_LEVEL = 0.35  # as features.pages: a pixel this far from paper towards ink is ink
# Share of a page that is ink, at 256 px: 1.9-13% on the public dataset's pages and 3.6-9.2% on
# generated ones; a blank scan's speckle stays far below the floor, noise and photos far above
# the ceiling.
_INK_SHARE = (0.001, 0.35)


@dataclass(frozen=True)
class PageCheck:
    """The gate's answer for one page.

    ``source`` is what to read: the page itself, or when turned an array of it the right way round.
    ``novelty`` is NaN without a fitted gate; ``unlike_training`` raises the uncertain flag.
    """

    name: str
    status: str  # READ, TURNED or REFUSED
    reason: str = ""
    orientation: str = "upright"
    novelty: float = float("nan")
    unlike_training: bool = False
    source: object = field(default=None, repr=False, compare=False)

    @property
    def readable(self) -> bool:
        return self.status != REFUSED


def page_descriptor(strength: np.ndarray) -> np.ndarray:
    """What the page looks like from afar: HOG of its ink squashed to 64x64, plus row and column ink profiles."""
    square = np.asarray(Image.fromarray(np.ascontiguousarray(strength, dtype=np.float32))
                        .resize((_SQUARE, _SQUARE), Image.Resampling.BOX))
    return np.concatenate([hog(square, cell=(8, 8), block=(2, 2)), square.mean(axis=1), square.mean(axis=0)])


def check_structure(grey: np.ndarray) -> tuple[str | None, bool]:
    """(why the page is refused or None, whether rows of traces were found) from a decoded page.

    Needs no fitting, so models saved before the gate existed still refuse a blank page.
    """
    refused = _ink_problem(ink_strength(grey))
    return (refused, False) if refused else (None, locate_leads(grey).method == "projection")


def ink_problem(source: ImageSource) -> str | None:
    """Why a page cannot be an ECG page from its ink alone (blank, or mostly ink), or None; cheap
    (a 256 px decode), for sorting out training pages before any gate is fitted. Raises
    ImageReadError when the page cannot be decoded."""
    return _ink_problem(_small_strength(source))


def _ink_problem(strength: np.ndarray) -> str | None:
    share = float(np.mean(strength > _INK_LEVEL))
    if share < _INK_SHARE[0]:
        return "the page is blank: no trace ink found"
    if share > _INK_SHARE[1]:
        return f"{share:.0%} of the page is ink: a photograph or noise, not a printed ECG"
    return None


class PageGate(BaseEstimator):
    """Orientation and novelty, fitted on a model's training pages (assumed upright).

    Parameters
    ----------
    C : float
        Inverse regularisation of the orientation classifier (logistic regression).
    neighbours : int
        How many nearest training pages the novelty score averages the distance to.
    refuse_factor : float
        A page whose novelty is this many times the training pages' 99th percentile is refused.
    min_turn_probability : float
        A page is turned only when the classifier is at least this sure of its orientation.
    """

    def __init__(self, C: float = 0.1, neighbours: int = 5, refuse_factor: float = 2.0,
                 min_turn_probability: float = 0.6):
        self.C = C
        self.neighbours = neighbours
        self.refuse_factor = refuse_factor
        self.min_turn_probability = min_turn_probability

    def fit(self, sources, y=None) -> "PageGate":
        """Fit on upright pages (paths, bytes or arrays); unreadable ones are left out."""
        from joblib import Parallel, delayed
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import NearestNeighbors
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # Decoding dominates and releases the GIL: threads share the cores without copying pages.
        every_way = Parallel(n_jobs=-1, prefer="threads")(delayed(_descriptors_every_way)(s) for s in sources)
        every_way = [found for found in every_way if found is not None]
        turned = [descriptor for found in every_way for descriptor in found]
        labels = list(range(len(_TURNS))) * len(every_way)
        upright = [found[0] for found in every_way]
        if len(upright) < 3:
            raise ValueError(f"a page gate needs at least 3 readable training pages, got {len(upright)}")
        self.orientation_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self.orientation_.fit(np.asarray(turned), np.asarray(labels))
        upright = np.asarray(upright)
        k = min(self.neighbours, len(upright) - 1)
        self.space_ = StandardScaler().fit(upright)
        self.neighbours_ = NearestNeighbors(n_neighbors=k).fit(self.space_.transform(upright))
        distances, _ = self.neighbours_.kneighbors(self.space_.transform(upright), n_neighbors=k + 1)
        own = distances[:, 1:].mean(axis=1)  # each page's distance to the others: leave-one-out
        self.scale_ = max(float(np.quantile(own, 0.99)), 1e-9)
        self.n_pages_ = len(upright)
        return self

    def check(self, source: ImageSource) -> PageCheck:
        """Read, turn or refuse one page (see the module's docstring)."""
        name = source_name(source)
        try:
            strength = _small_strength(source)
        except ImageReadError as exc:
            return PageCheck(name, REFUSED, f"{exc.reason}; {exc.hint}", source=source)
        orientation = self._orientation(strength) if hasattr(self, "orientation_") else "upright"
        _, undo, said = _TURNS[orientation]
        upright_source = source if orientation == "upright" else _turned_source(source, undo)
        if hasattr(self, "neighbours_"):
            # From the page turned back at full resolution: shrinking the turned page would put thin
            # lines in other pixel blocks than the upright page's, and the descriptor notices.
            novelty = self._novelty(strength if orientation == "upright" else _small_strength(upright_source))
        else:
            novelty = float("nan")
        grey, _ = load_image_and_size(upright_source, min_side=_STRUCTURE_SIDE)
        refused, rows_found = check_structure(grey)
        fitted = novelty == novelty
        # Without a fitted gate (a model saved before it existed) a page with no rows is only flagged.
        unlike = novelty > 1.0 if fitted else not rows_found
        if refused is None and fitted and novelty > self.refuse_factor:
            refused = (f"not an ECG page like those the model was trained on (novelty {novelty:.1f}; "
                       f"training pages score up to 1.0)")
        elif refused is None and fitted and unlike and not rows_found:
            refused = "no rows of ECG traces found, and the page is unlike the training pages"
        if refused is not None:
            return PageCheck(name, REFUSED, f"{refused}; send a 12-lead ECG page", orientation, novelty, True, source)
        status, reason = (READ, "") if orientation == "upright" else (TURNED, f"read the right way round: it was {said}")
        return PageCheck(name, status, reason, orientation, novelty, bool(unlike), upright_source)

    def _orientation(self, strength: np.ndarray) -> str:
        proba = self.orientation_.predict_proba(page_descriptor(strength)[None])[0]
        best = int(proba.argmax())
        return ORIENTATIONS[best] if proba[best] >= self.min_turn_probability else "upright"

    def _novelty(self, strength: np.ndarray) -> float:
        distances, _ = self.neighbours_.kneighbors(self.space_.transform(page_descriptor(strength)[None]))
        return float(distances.mean() / self.scale_)


def _descriptors_every_way(source: ImageSource) -> list[np.ndarray] | None:
    """The page's descriptor in each of the eight orientations (upright first); None when unreadable."""
    try:
        strength = _small_strength(source)
    except ImageReadError:
        return None
    return [page_descriptor(turn(strength)) for turn, _, _ in _TURNS.values()]


def _small_strength(source: ImageSource) -> np.ndarray:
    grey, _ = load_image_and_size(source, min_side=_DECODE_SIDE)
    return ink_strength(grey)


def _turned_source(source: ImageSource, undo: Callable) -> np.ndarray:
    """The page at full resolution, the right way round, as an RGB array the feature code reads."""
    return np.ascontiguousarray(undo(load_image(source, mode="RGB")))
