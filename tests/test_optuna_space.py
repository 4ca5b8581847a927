"""The Optuna engine's pruner: each trial judged against finished trials of its own network family."""
from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from automl.engines.optuna_space import FamilyMedianPruner, make_pruner

FAMILY = {"family": CategoricalDistribution(["cnn", "conv1d", "resnet"])}


def finished(family: str, curve: list[float]):
    return create_trial(state=TrialState.COMPLETE, value=max(curve), params={"family": family}, distributions=FAMILY,
                        intermediate_values=dict(enumerate(curve)))


def running(family: str, curve: list[float]):
    # The pruner reads only the trial's params and its curve so far; its state does not matter.
    return finished(family, curve)


@pytest.fixture
def study():
    """Two finished 1-D networks that learn fast, and two image CNNs that start slowly."""
    study = optuna.create_study(direction="maximize")
    for trial in (finished("conv1d", [0.5, 0.8, 0.9]), finished("conv1d", [0.5, 0.8, 0.9]),
                  finished("cnn", [0.1, 0.2, 0.6]), finished("cnn", [0.1, 0.2, 0.7])):
        study.add_trial(trial)
    return study


def test_a_slow_starting_family_is_judged_by_its_own_median(study):
    pruner = FamilyMedianPruner()
    # 0.3 at the second epoch: above the CNNs' median (0.2), below the median of all four (0.5).
    assert not pruner.prune(study, running("cnn", [0.1, 0.3]))
    assert optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1).prune(study, running("cnn", [0.1, 0.3]))
    # A 1-D network that far behind its own family is pruned.
    assert pruner.prune(study, running("conv1d", [0.2, 0.3]))


def test_no_pruning_before_the_family_has_two_finished_trials_or_in_the_first_epoch(study):
    pruner = FamilyMedianPruner()
    study.add_trial(finished("resnet", [0.0, 0.0]))  # a family with one finished trial
    assert not pruner.prune(study, running("resnet", [0.0, 0.0]))
    assert not pruner.prune(study, running("conv1d", [0.0]))  # epoch 1: warm-up


def test_make_pruner_names():
    assert isinstance(make_pruner("median", 10), FamilyMedianPruner)
    assert isinstance(make_pruner("hyperband", 10), optuna.pruners.HyperbandPruner)
    with pytest.raises(ValueError, match="choose median, hyperband or none"):
        make_pruner("asha", 10)
