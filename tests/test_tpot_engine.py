"""TPOT's engine: the time kept for refits grows with what the best pipelines cost (no TPOT run here)."""
import pytest

from automl.engines.tpot_engine import TPOTEngine


def _ok(score, seconds):
    return {"status": "ok", "score": score, "seconds": seconds}


def test_the_refit_reserve_follows_the_cost_of_the_best_pipelines():
    engine = TPOTEngine(candidates=2)
    least = 5.0
    assert engine._refit_seconds([], folds=3, least=least, seconds=120) == least
    cheap = [_ok(0.9, 0.5), _ok(0.8, 0.5), _ok(0.7, 30.0)]  # the slow one is not among the best two
    assert engine._refit_seconds(cheap, folds=3, least=least, seconds=120) == least
    slow = [_ok(0.9, 12.0), _ok(0.8, 6.0), {"status": "failed", "score": None, "seconds": 90.0}]
    # Out-of-fold predictions cost a cross-validation again, the refit one more fold: 2 + 18 * 4/3.
    assert engine._refit_seconds(slow, folds=3, least=least, seconds=120) == pytest.approx(26.0)
    # Never more than half the slice: TPOT still gets to search.
    assert engine._refit_seconds(slow, folds=3, least=least, seconds=40) == 20.0
