"""TPOT's engine: the time kept for refits grows with what the best pipelines cost (no TPOT run here)."""
import pytest

from automl.engines.tpot_engine import TPOTEngine


def _ok(score, seconds, pipeline=None):
    return {"status": "ok", "score": score, "seconds": seconds, "pipeline": pipeline or f"pipeline scoring {score}"}


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


def test_a_pipeline_evaluated_again_is_one_candidate():
    """Evolution brings individuals back: the best three trials of a real search were one pipeline."""
    from automl.engines.tpot_engine import _best_distinct

    forest, boosting, svc = "RandomForestClassifier(...)", "HistGradientBoostingClassifier(...)", "SVC(...)"
    records = [_ok(0.77, 3.0, forest), _ok(0.71, 2.0, svc), _ok(0.77, 3.0, forest), _ok(0.75, 9.0, boosting),
               {"status": "failed", "score": None, "seconds": 1.0, "pipeline": "broken"}, _ok(0.60, 1.0, forest)]
    best = _best_distinct(records, 3)
    assert [r["pipeline"] for r in best] == [forest, boosting, svc]
    assert best[0]["score"] == 0.77
    # The refit reserve counts the distinct best ones: (3 + 9 + 2) s of CV, each 4/3 with its refit.
    assert TPOTEngine(candidates=3)._refit_seconds(records, folds=3, least=1.0, seconds=600) == pytest.approx(
        2.0 + 14.0 * 4 / 3)
