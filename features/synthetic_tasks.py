"""What a network can learn from a generated page beyond its class: the generator's truth as targets.

Pretraining (``smartecg pretrain``) supervises a backbone on several tasks at once, all read off
:func:`features.synthetic.make_page`'s ground truth:

* ``class``: the five classes;
* ``rhythm``: sinus, atrial fibrillation or ventricular ectopics;
* ``territory``: the MI territory (none, anterior, inferior, lateral);
* ``q_waves``: pathological Q waves in some lead (an old infarct);
* ``rate``: the heart rate, in beats per minute / 100;
* ``st``: the largest ST elevation and the largest ST depression over the 12 leads, in mV.

Each page is drawn from its own seed: class, layout (3x4 or 6x2), grid or none, and the scan
artefacts the generator picks for it, so a pool of pages covers what real scans vary in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synthetic import CLASSES, LAYOUTS, TERRITORIES, make_page

__all__ = ["GRIDLESS_SHARE", "RHYTHMS", "SIX_BY_TWO_SHARE", "TASKS", "TERRITORY_NAMES", "Task", "page_targets", "training_page"]

RHYTHMS = ("sinus", "atrial_fibrillation", "ventricular_ectopics")
SIX_BY_TWO_SHARE, GRIDLESS_SHARE = 0.4, 0.4  # of the pages a seed draws; real sets mix both layouts
TERRITORY_NAMES = ("none", *sorted(TERRITORIES))


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "class": softmax over ``labels``; "value": regression of ``size`` numbers
    labels: tuple[str, ...] = ()
    size: int = 1
    unit: str = ""

    @property
    def outputs(self) -> int:
        return len(self.labels) if self.kind == "class" else self.size


TASKS = (
    Task("class", "class", CLASSES),
    Task("rhythm", "class", RHYTHMS),
    Task("territory", "class", TERRITORY_NAMES),
    Task("q_waves", "class", ("no", "yes")),
    Task("rate", "value", unit="bpm/100"),
    Task("st", "value", size=2, unit="mV (elevation, depression)"),
)


def page_targets(label: str, meta: dict) -> dict[str, np.ndarray | int]:
    """The targets of one page from its class and the generator's ``meta``."""
    st = np.array(list(meta["st_mv"].values()), dtype=np.float32)
    return {
        "class": CLASSES.index(label),
        "rhythm": RHYTHMS.index(meta["rhythm"]),
        "territory": TERRITORY_NAMES.index(meta.get("territory", "none")),
        "q_waves": int(label == "MI_History"),  # the generator draws deep, wide Q waves for an old infarct only
        "rate": np.float32(meta["heart_rate"] / 100.0),
        "st": np.array([max(st.max(), 0.0), max(-st.min(), 0.0)], dtype=np.float32),
    }


def training_page(seed: int, *, six_by_two: float = SIX_BY_TWO_SHARE, gridless: float = GRIDLESS_SHARE
                  ) -> tuple[bytes, dict]:
    """One generated page, as the JPEG file a scanner would give, and its targets.

    The seed draws the class (uniformly), the layout, the grid and, in the generator, the scan."""
    rng = np.random.default_rng([seed, 0x5EC6])
    label = CLASSES[int(rng.integers(len(CLASSES)))]
    layout = LAYOUTS[1] if rng.random() < six_by_two else LAYOUTS[0]
    page = make_page(label, seed, layout=layout, grid=bool(rng.random() >= gridless))
    return page.jpeg_bytes(), page_targets(label, page.meta)
