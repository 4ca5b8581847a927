"""Budgets: parsing, the deadline, and slices that pass unspent time on."""
import pytest

from automl.budget import Budget, format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("1.5h", 5400), (" 2M ", 120)])
def test_durations_in_seconds_minutes_and_hours(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "10d", "m", "-5m", "0s", ""])
def test_other_durations_are_refused_with_an_example(text):
    with pytest.raises(ValueError, match="s, m or h|positive"):
        parse_duration(text)


def test_format_duration_is_short():
    assert [format_duration(s) for s in (42, 245, 3720)] == ["42s", "4m05s", "1h02m"]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_slices_share_what_is_left_after_the_reserve_and_unspent_time_flows_on():
    clock = FakeClock()
    budget = Budget(100, reserve=10, clock=clock)
    clock.now += 10  # data scan and features
    plan = budget.plan({"tpot": 2, "optuna": 1, "autokeras": 0})
    assert list(plan) == ["tpot", "optuna"]
    assert plan.slice("tpot") == pytest.approx(80 * 2 / 3)
    clock.now += 20  # tpot stopped early: its unspent time goes to the next engine
    assert plan.slice("optuna") == pytest.approx(60)
    clock.now += 60
    assert budget.remaining() == pytest.approx(10) and not budget.expired()
    clock.now += 11
    assert budget.expired() and budget.engine_slice(1, 1) == 0


def test_a_budget_must_be_positive_and_weights_non_negative():
    with pytest.raises(ValueError):
        Budget(0)
    with pytest.raises(ValueError, match="weight"):
        Budget(10).plan({"tpot": -1})
