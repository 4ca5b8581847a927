"""What the Optuna engine searches: architecture, input, augmentation and training, per trial.

Define-by-run: the family is drawn first, and the choices that only make sense for it follow
(lead signals for the 1-D network; page or lead-mosaic images, their size and grid suppression
for the 2-D ones). Parameter names are stable, so a later search resumes the same study.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import optuna

__all__ = ["DEFAULT_BACKBONES", "FamilyMedianPruner", "Setup", "conflicting_choices", "make_pruner", "sample_setup", "space_choices"]

_ASPECT = 1.6  # width / height of the normalised lead area (320x512)
DEFAULT_BACKBONES = ("leads", "signals")  # SmartECG's own, from `smartecg pretrain`; "imagenet" on request


@dataclass(frozen=True)
class Setup:
    family: str
    view: str  # "page", "leads" (layout-proof mosaic of the 12 leads) or "signals"
    size: tuple[int, int]
    suppress_grid: bool
    width: int
    depth: int
    dropout: float
    learning_rate: float
    batch_size: int
    class_weights: bool
    epochs: int
    augment: Callable[[np.ndarray], np.ndarray] | None
    augment_text: str
    fine_tune_after: int | None
    backbone: str = "imagenet"  # transfer only: "leads"/"signals" (SmartECG's pretrained) or "imagenet"
    unfreeze_blocks: int | None = None  # transfer: the backbone's last blocks fine-tuned (None: all of it)
    fine_tune_factor: float = 0.1  # transfer: fine-tuning's learning rate over the frozen phase's

    @property
    def tensor_key(self) -> tuple:
        return self.view, self.size, self.suppress_grid

    @property
    def description(self) -> str:
        shape = f"{self.view} {self.size[0]}x{self.size[1]}" + ("" if self.suppress_grid else " grid kept")
        if self.family == "transfer":
            blocks = "all" if self.unfreeze_blocks is None else self.unfreeze_blocks
            net = (f"transfer({self.backbone} backbone, fine-tune {blocks} blocks at x{self.fine_tune_factor:.2g} lr, "
                   f"dropout={self.dropout:.2f})")
        else:
            net = f"{self.family}(width={self.width}, depth={self.depth}, dropout={self.dropout:.2f})"
        return (f"{net} on {shape}; "
                f"lr={self.learning_rate:.2g}, batch={self.batch_size}, epochs={self.epochs}, "
                f"class_weights={self.class_weights}, augment={self.augment_text}")

    def features(self, cache_dir=None):
        """The page transformer this network reads, stored inside the model."""
        from features.tensors import PageTensors

        return PageTensors(view=self.view, size=self.size, suppress_grid=self.suppress_grid, cache_dir=cache_dir)


def space_choices(job: dict) -> dict[str, list]:
    """The categorical choices that come from the spec: Optuna refuses another set of choices under
    a parameter name a study already has ("dynamic value space"), so they name the study."""
    choices = {"family": list(job["families"]), "view": list(job["views"]), "height": list(job["heights"]),
               "signal_length": list(job["signal_lengths"])}
    if "transfer" in job["families"]:
        choices["backbone"] = list(job.get("backbones", DEFAULT_BACKBONES))
    return choices


def conflicting_choices(study, job: dict) -> list[str]:
    """``name: stored -> asked`` for every categorical parameter whose choices differ from the study's."""
    wanted = space_choices(job)
    stored = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            if name in wanted and isinstance(distribution, optuna.distributions.CategoricalDistribution):
                stored.setdefault(name, list(distribution.choices))
    return [f"{name}: {stored[name]} -> {wanted[name]}" for name in sorted(stored) if stored[name] != wanted[name]]


def sample_setup(trial, job: dict) -> Setup:
    """Draw one trial's set-up from the options in ``job`` (families, heights, epochs...)."""
    family = trial.suggest_categorical("family", job["families"])
    backbone, unfreeze_blocks, fine_tune_factor = "imagenet", None, 0.1
    if family == "transfer":
        backbone = trial.suggest_categorical("backbone", list(job.get("backbones", DEFAULT_BACKBONES)))
    if backbone != "imagenet":
        from automl.engines.backbones import BACKBONE_VIEWS, find_backbone

        found = find_backbone(backbone, job.get("weights_dir"))
        # Its tensors as the backbone learnt them; a missing backbone fails when the network is built.
        view, size, suppress_grid = backbone, tuple(found.size if found else BACKBONE_VIEWS[backbone]), True
        unfreeze_blocks = trial.suggest_int("unfreeze_blocks", 0, found.blocks if found else 4)
        fine_tune_factor = trial.suggest_float("fine_tune_lr_factor", 0.03, 0.3, log=True)
    elif family == "conv1d":
        view = "signals"
        length = trial.suggest_categorical("signal_length", job["signal_lengths"])
        size, suppress_grid = (12, int(length)), True
    else:
        view = trial.suggest_categorical("view", job["views"])
        height = trial.suggest_categorical("height", job["heights"])
        size = (int(height), int(round(height * _ASPECT / 8)) * 8)
        suppress_grid = trial.suggest_categorical("suppress_grid", [True, False])
    if family == "transfer":
        width, depth = 0, 0  # the backbone's own
    else:
        width = trial.suggest_categorical("width", [8, 16, 32])
        depth = trial.suggest_int("depth", 2, 4)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    learning_rate = trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True)
    batch_size = trial.suggest_categorical("batch_size", [8, 16, 32])
    class_weights = trial.suggest_categorical("class_weights", [True, False])
    epochs = trial.suggest_int("epochs", job["min_epochs"], job["max_epochs"])
    augment, augment_text = _augmentation(trial, view)
    # Transfer: the head learns on the frozen backbone first, then (some of) the backbone is tuned.
    fine_tune_after = max(1, epochs // 2) if family == "transfer" and unfreeze_blocks != 0 else None
    return Setup(family, view, size, suppress_grid, width, depth, dropout, learning_rate, batch_size, class_weights,
                 epochs, augment, augment_text, fine_tune_after, backbone, unfreeze_blocks, fine_tune_factor)


def _augmentation(trial, view: str):
    if not trial.suggest_categorical("augment", [True, False]):
        return None, "none"
    from features.augment import Augmentation

    if view == "signals":
        augmentation = Augmentation()  # signals: the module's own time-shift and gain jitter
    else:
        augmentation = Augmentation(rotation_deg=trial.suggest_float("aug_rotation_deg", 0.0, 3.0),
                                    scale=trial.suggest_float("aug_scale", 0.0, 0.08),
                                    shift=trial.suggest_float("aug_shift", 0.0, 0.05),
                                    contrast=trial.suggest_float("aug_contrast", 0.0, 0.3))
    rng = np.random.default_rng(trial.number)
    return (lambda batch: augmentation.apply(batch, rng)), repr(augmentation)


def make_pruner(name: str, max_epochs: int):
    """``median`` (stop a trial below the median of its family's finished trials at the same epoch),
    ``hyperband`` or ``none``.

    The median pruner waits for two finished trials of the trial's family and judges from the
    second epoch on: one trial's curve, or one epoch, is too noisy a reference on small data.
    """
    if name == "median":
        return FamilyMedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, max_epochs))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose median, hyperband or none")


class FamilyMedianPruner(optuna.pruners.BasePruner):
    """Optuna's median pruner, judging a trial only against finished trials of its own family.

    Families learn at different speeds: a 1-D network on the lead signals is past chance after
    one epoch where an image CNN on the same pages is still at it after three. Against one median
    for all, every image network was pruned in its second epoch and the study never learnt what
    they reach (seen on 200 synthetic pages: 16 of 16 image trials pruned, at macro-F1 0.07-0.30).
    """

    def __init__(self, n_startup_trials: int = 2, n_warmup_steps: int = 1) -> None:
        self._median = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)

    def prune(self, study, trial) -> bool:
        return self._median.prune(_FamilyTrials(study, trial.params.get("family")), trial)


class _FamilyTrials:
    """A study seen through one family: ``get_trials`` returns only that family's trials."""

    def __init__(self, study, family) -> None:
        self._study, self._family = study, family

    def get_trials(self, deepcopy: bool = True, states=None):
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.params.get("family") == self._family]

    def __getattr__(self, name):
        return getattr(self._study, name)
