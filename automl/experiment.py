"""Experiment specs: the YAML files in ``experiments/`` that say what a search runs and how it judges.

A spec names the MLflow experiment and the registered model, the metric that picks and promotes
models, the feature sets, the split, and the engines with their budget weights and options::

    name: smartecg-default
    registry_name: smartecg
    metric: macro_f1
    features: [trace, hog_leads]
    engines:
      tpot: {weight: 1, population_size: 16, cv: 5}

Unknown keys are refused with the file and key named, so a typo never silently runs defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.engines import ENGINES, engine_class

__all__ = ["ENGINES", "METRICS", "EngineSpec", "ExperimentSpec", "load_spec", "builtin_spec_path"]

# Metric name -> key in automl.evaluate's metric dict; all are "higher is better".
METRICS = ("macro_f1", "accuracy", "balanced_accuracy", "roc_auc")
EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"


@dataclass(frozen=True)
class EngineSpec:
    """One engine of a spec: its share of the budget and its own options (engine-specific)."""

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentSpec:
    name: str = "smartecg-default"
    registry_name: str = "smartecg"
    metric: str = "macro_f1"
    features: tuple[str, ...] = ("trace",)
    engines: tuple[EngineSpec, ...] = (EngineSpec("tpot"),)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    # Kept back from the engines for holdout scoring, model logging and registration.
    reserve_seconds: float = 20.0
    # automl.calibration method, fitted on pages each candidate was not fitted on.
    calibration: str = "auto"
    # A page whose top (calibrated) probability is below this is "uncertain - refer for review".
    uncertain_below: float = 0.6
    # The chosen model refitted on every page, holdout included (automl.refit); its holdout
    # figures and champion/challenger stay with its twin fitted without the holdout.
    refit_all_pages: bool = True
    # Holdout pages per class the search explains with its best model, and LIME's samples per page.
    explain_pages: int = 2
    lime_samples: int = 200
    # Seconds of a search started without --budget (nightly runs); None: --budget is required.
    budget_seconds: float | None = None
    source: str = "<defaults>"

    def engine(self, name: str) -> EngineSpec:
        for engine in self.engines:
            if engine.name == name:
                return engine
        raise KeyError(name)

    def with_engines(self, names: list[str]) -> "ExperimentSpec":
        """The spec restricted to ``names`` (``--engines``), keeping each one's options."""
        unknown = [n for n in names if n not in ENGINES]
        if unknown:
            raise ValueError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
        by_name = {e.name: e for e in self.engines}
        return dataclasses.replace(self, engines=tuple(by_name.get(n, EngineSpec(n)) for n in names))

    def with_options(self, engine: str, **options: Any) -> "ExperimentSpec":
        """The spec with ``options`` set on ``engine`` when the spec runs it (command-line overrides)."""
        engines = tuple(dataclasses.replace(e, options={**e.options, **options}) if e.name == engine else e
                        for e in self.engines)
        return dataclasses.replace(self, engines=engines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "registry_name": self.registry_name, "metric": self.metric,
            "features": list(self.features), "split_fractions": list(self.split_fractions),
            "reserve_seconds": self.reserve_seconds, "calibration": self.calibration,
            "uncertain_below": self.uncertain_below, "refit_all_pages": self.refit_all_pages,
            "explain": {"pages_per_class": self.explain_pages, "lime_samples": self.lime_samples},
            "budget": self.budget_seconds,
            "engines": {e.name: {"weight": e.weight, **e.options} for e in self.engines},
        }


def builtin_spec_path(name: str) -> Path:
    """``experiments/<name>.yaml`` shipped with SmartECG (default, quick, nightly)."""
    return EXPERIMENTS_DIR / f"{name}.yaml"


def load_spec(path: str | Path | None = None) -> ExperimentSpec:
    """Read and check a spec; ``None`` reads the shipped ``default.yaml``.

    A bare name such as ``quick`` finds the shipped ``experiments/quick.yaml``.
    """
    import yaml

    from automl.calibration import CALIBRATION_METHODS
    from features.handcrafted import FEATURE_SETS

    path = builtin_spec_path("default") if path is None else Path(path)
    if not path.exists() and path.suffix == "" and builtin_spec_path(str(path)).exists():
        path = builtin_spec_path(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: experiment spec not found; shipped specs: "
                                f"{', '.join(p.stem for p in sorted(EXPERIMENTS_DIR.glob('*.yaml')))}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")

    def fail(message: str):
        raise ValueError(f"{path}: {message}")

    allowed = {"name", "registry_name", "metric", "features", "engines", "split_fractions", "reserve_seconds",
               "calibration", "uncertain_below", "refit_all_pages", "explain", "budget"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        fail(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    defaults = ExperimentSpec()
    metric = raw.get("metric", defaults.metric)
    if metric not in METRICS:
        fail(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    features = tuple(raw.get("features", defaults.features))
    bad = [f for f in features if f not in FEATURE_SETS]
    if not features or bad:
        fail(f"unknown feature set(s) {', '.join(map(str, bad)) or '(none given)'}; "
             f"choose from {', '.join(FEATURE_SETS)}")
    engines = []
    for name, options in (raw.get("engines") or {"tpot": {}}).items():
        if name not in ENGINES:
            fail(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
        options = dict(options or {})
        weight = options.pop("weight", 1.0)
        allowed_options = _engine_options(name)
        typos = sorted(set(options) - allowed_options)
        if typos:
            fail(f"engines.{name}: unknown option(s) {', '.join(typos)}; allowed: weight, {', '.join(sorted(allowed_options))}")
        if not isinstance(weight, (int, float)) or weight < 0:
            fail(f"engines.{name}.weight must be a number >= 0, got {weight!r}")
        engines.append(EngineSpec(name, float(weight), options))
    if not any(e.weight > 0 for e in engines):
        fail("every engine has weight 0; give at least one a positive weight")
    fractions = tuple(float(f) for f in raw.get("split_fractions", defaults.split_fractions))
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        fail(f"split_fractions must be three positive numbers (train, validation, holdout) summing to 1, got {fractions}")
    reserve = raw.get("reserve_seconds", defaults.reserve_seconds)
    if not isinstance(reserve, (int, float)) or reserve < 0:
        fail(f"reserve_seconds must be a number >= 0, got {reserve!r}")
    calibration = raw.get("calibration", defaults.calibration)
    if calibration not in CALIBRATION_METHODS:
        fail(f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, got {calibration!r}")
    uncertain_below = raw.get("uncertain_below", defaults.uncertain_below)
    if isinstance(uncertain_below, bool) or not isinstance(uncertain_below, (int, float)) \
            or not 0 <= uncertain_below <= 1:
        fail(f"uncertain_below must be a probability between 0 and 1, got {uncertain_below!r}")
    refit_all_pages = raw.get("refit_all_pages", defaults.refit_all_pages)
    if not isinstance(refit_all_pages, bool):
        fail(f"refit_all_pages must be true or false, got {refit_all_pages!r}")
    explain = raw.get("explain") or {}
    if not isinstance(explain, dict) or set(explain) - {"pages_per_class", "lime_samples"}:
        fail(f"explain takes pages_per_class and lime_samples, got {explain!r}")
    pages = explain.get("pages_per_class", defaults.explain_pages)
    samples = explain.get("lime_samples", defaults.lime_samples)
    if not _whole_at_least(pages, 0) or not _whole_at_least(samples, 10):
        fail(f"explain: pages_per_class must be a whole number >= 0 and lime_samples >= 10, got {explain!r}")
    budget = raw.get("budget")
    if budget is not None:
        from automl.budget import parse_duration

        try:
            budget = parse_duration(str(budget))
        except ValueError as exc:
            fail(f"budget: {exc}")
    return ExperimentSpec(
        name=str(raw.get("name", path.stem)), registry_name=str(raw.get("registry_name", defaults.registry_name)),
        metric=metric, features=features, engines=tuple(engines), split_fractions=fractions,
        reserve_seconds=float(reserve), calibration=calibration, uncertain_below=float(uncertain_below),
        refit_all_pages=refit_all_pages,
        explain_pages=int(pages), lime_samples=int(samples), budget_seconds=budget, source=str(path),
    )


def _whole_at_least(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _engine_options(name: str) -> set[str]:
    """The keyword arguments an engine's constructor takes: what its YAML block may set."""
    import inspect

    parameters = inspect.signature(engine_class(name).__init__).parameters
    return {p for p in parameters if p != "self"}
