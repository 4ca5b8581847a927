"""The search's engines, by name: the one place that maps a spec's engine names to classes.

Classes are imported when first asked for (TPOT, TensorFlow and AutoKeras take seconds to import),
so reading a spec or ``smartecg --help`` stays instant.
"""
from __future__ import annotations

import importlib

__all__ = ["ENGINES", "engine_class", "make_engine"]

# name -> "module:Class", in the order a spec usually runs them.
_CLASSES = {
    "portfolio": "automl.engines.portfolio:PortfolioEngine",
    "tpot": "automl.engines.tpot_engine:TPOTEngine",
    "optuna": "automl.engines.optuna_engine:OptunaEngine",
    "autokeras": "automl.engines.autokeras_engine:AutoKerasEngine",
}
ENGINES = tuple(_CLASSES)


def engine_class(name: str):
    try:
        module, cls = _CLASSES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}") from None
    return getattr(importlib.import_module(module), cls)


def make_engine(spec):
    """An engine from a spec's :class:`~automl.experiment.EngineSpec` (its name and options)."""
    return engine_class(spec.name)(**spec.options)
