"""Federated training (issue 25) on feature rows: the head, the protocol, Flower, and what crosses the wire.

Pages enter in tests/test_federated_pages.py; here each site's "pages" are rows of numbers, which
makes the checks fast and the wire inspection exact.
"""
from __future__ import annotations

import numpy as np
import pytest

from automl.federated.head import HeadSpec, Scaling, as_pipeline, feature_sums, head_proba, initial_weights
from automl.federated.head import _gradients
from automl.federated.protocol import (MIN_SITE_PAGES, Coordinator, SiteClient, SiteData, macro_f1_of,
                                       run_in_process)

CLASSES = ["a", "b", "c"]


def blobs(n: int, seed: int, shift: float = 0.0, n_features: int = 12):
    """Three classes of Gaussian rows; ``shift`` moves a site's rows (sites differ, as hospitals do)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.random.default_rng(0).normal(0, 2.0, size=(3, n_features))
    X = centres[y] + rng.normal(0, 1.5, size=(n, n_features)) + shift
    return X * 10 + 50, y  # far from standard scale: the federation's scaling has work to do


def site(name: str, n: int, seed: int, shift: float = 0.0) -> SiteData:
    X, y = blobs(n + 12, seed, shift)
    return SiteData(name, X[:n], y[:n], X[n:], y[n:])


def accuracy(result, X, y) -> float:
    return float((head_proba(result.weights, result.scaling.apply(X)).argmax(axis=1) == y).mean())


def test_federated_scaling_is_the_pooled_scaling():
    X, _ = blobs(90, 1)
    X[5, 3] = np.nan  # a feature a page lacks is left out of the sums
    parts = [feature_sums(part) for part in np.array_split(X, 3)]
    federated = Scaling.from_sums(*(sum(p[i] for p in parts) for i in range(3)))
    np.testing.assert_allclose(federated.mean, np.nanmean(X, axis=0))
    np.testing.assert_allclose(federated.std, np.nanstd(X, axis=0))


@pytest.mark.parametrize("hidden", [0, 7])
def test_gradients_match_finite_differences(hidden):
    rng = np.random.default_rng(3)
    Z, y, w = rng.normal(size=(9, 4)), rng.integers(0, 3, 9), rng.uniform(0.5, 2, 9)
    weights = initial_weights(4, 3, HeadSpec(hidden=hidden), seed=1)

    def loss(ws):
        p = head_proba(ws, Z)
        return float(-(w * np.log(p[np.arange(9), y])).sum() / w.sum())

    grads = _gradients(weights, Z, y, w)
    for i, layer in enumerate(weights):
        for index in list(np.ndindex(layer.shape))[:6]:
            bumped = [x.copy() for x in weights]
            bumped[i][index] += 1e-6
            lowered = [x.copy() for x in weights]
            lowered[i][index] -= 1e-6
            assert grads[i][index] == pytest.approx((loss(bumped) - loss(lowered)) / 2e-6, abs=1e-6)


@pytest.mark.parametrize("hidden", [0, 6])
def test_pipeline_computes_the_head(hidden):
    """The model that is registered is a scikit-learn pipeline: it must give the head's own numbers."""
    X, y = blobs(60, 2)
    spec = HeadSpec(hidden=hidden)
    result = run_in_process([SiteClient(SiteData("s", X[:48], y[:48], X[48:], y[48:]), 3, spec)],
                            Coordinator(CLASSES, spec, 3))
    pipeline = as_pipeline(result.weights, result.scaling, CLASSES, spec)
    X_missing = X.copy()
    X_missing[0, 2] = np.nan  # imputed with the federation's mean, as the head reads it
    expected = head_proba(result.weights, result.scaling.apply(X_missing))
    order = [list(pipeline.classes_).index(c) for c in CLASSES]
    np.testing.assert_allclose(pipeline.predict_proba(X_missing)[:, order], expected, atol=1e-10)


def test_federation_of_differing_sites_matches_pooled_training():
    sites = [site("north", 60, 1, shift=0.0), site("south", 40, 2, shift=0.6), site("east", 30, 3, shift=-0.6)]
    X_test, y_test = blobs(300, 9, shift=0.0)
    spec = HeadSpec()
    federated = run_in_process([SiteClient(s, 3, spec) for s in sites], Coordinator(CLASSES, spec, 8))
    pooled_site = SiteData("pooled", *(np.concatenate([getattr(s, k) for s in sites])
                                       for k in ("X_learn", "y_learn", "X_check", "y_check")))
    pooled = run_in_process([SiteClient(pooled_site, 3, spec)], Coordinator(CLASSES, spec, 8))
    assert accuracy(federated, X_test, y_test) > 0.9
    assert abs(accuracy(federated, X_test, y_test) - accuracy(pooled, X_test, y_test)) < 0.05
    assert len(federated.rounds) == 8 and set(federated.rounds[-1].sites) == {"north", "south", "east"}
    assert federated.pages_per_site == {"north": 60, "south": 40, "east": 30}
    last = federated.rounds[-1]
    assert last.overall["pages"] == 36 and 0.0 <= last.overall["macro_f1"] <= 1.0


def test_fedprox_keeps_a_site_near_the_global_model():
    data = site("s", 40, 4)
    start = initial_weights(12, 3, HeadSpec(), seed=0)
    scaling = Scaling(data.X_learn.mean(axis=0), data.X_learn.std(axis=0))
    config = {"stage": "train", "seed": 1}
    params = [scaling.mean, scaling.std, np.ones(3), *start]
    free, _, _ = SiteClient(data, 3, HeadSpec(mu=0.0)).fit(params, config)
    held, _, _ = SiteClient(data, 3, HeadSpec(mu=0.0)).fit(params, {**config, "mu": 5.0})  # the server's recipe wins
    assert np.linalg.norm(held[0] - start[0]) < 0.8 * np.linalg.norm(free[0] - start[0])


def test_a_site_too_small_or_reading_other_features_refuses():
    with pytest.raises(ValueError, match=f"at least {MIN_SITE_PAGES}"):
        SiteClient(site("tiny", MIN_SITE_PAGES - 1, 1), 3, HeadSpec())
    client = SiteClient(site("s", 20, 1), 3, HeadSpec(), features="trace:3")
    with pytest.raises(ValueError, match="server trains on features signals:2"):
        client.fit([], {"stage": "stats", "features": "signals:2"})


def test_macro_f1_of_a_confusion_matrix():
    from sklearn.metrics import f1_score

    y_true, y_pred = np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 0, 0])
    confusion = np.zeros((4, 4), int)
    np.add.at(confusion, (y_true, y_pred), 1)
    assert macro_f1_of(confusion) == pytest.approx(f1_score(y_true, y_pred, labels=[0, 1, 2], average="macro"))


def test_the_budget_stops_rounds_after_the_first():
    spec = HeadSpec()
    coordinator = Coordinator(CLASSES, spec, 50, deadline=0.0)  # long past
    result = run_in_process([SiteClient(site("s", 20, 1), 3, spec), SiteClient(site("t", 20, 2), 3, spec)], coordinator)
    assert len(result.rounds) == 1


@pytest.mark.slow
def test_over_flower_the_same_numbers_cross_and_no_site_row_does():
    """A real Flower federation on loopback through a relay that records every byte each site sends.

    The weights equal the in-process run's (Flower only carries the protocol); the recorded bytes
    hold the sites' sums (so the search below looks at the right bytes) but no row of any site's
    features, in float64 or float32; and a site with four times the rows sends no more bytes.
    """
    from automl.federated.flower import free_port, simulate
    from tests.wire_tap import WireTap

    def federate(sites, tap_target=None):
        spec = HeadSpec()
        port = free_port()
        tap = WireTap(("127.0.0.1", port))
        try:
            result = simulate([SiteClient(s, 3, spec) for s in sites], Coordinator(CLASSES, spec, 3),
                              address=f"127.0.0.1:{port}", dial=tap.address)
        finally:
            tap.close()
        return result, tap

    sites = [site("north", 30, 1), site("south", 30, 2, shift=0.5)]
    result, tap = federate(sites)
    alone = run_in_process([SiteClient(s, 3, HeadSpec()) for s in sites], Coordinator(CLASSES, HeadSpec(), 3))
    for ours, theirs in zip(result.weights, alone.weights):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    assert result.temperature == alone.temperature and len(result.rounds) == 3

    wire = tap.sent_bytes()
    _, total, _ = feature_sums(sites[0].X_learn)
    assert total.astype("<f8").tobytes() in wire  # the sums a site sends are on the wire as float64
    for data in sites:
        for rows in (data.X_learn, data.X_check, result.scaling.apply(data.X_learn)):
            for row in rows:
                for dtype in ("<f8", "<f4"):
                    window = np.asarray(row[:4], dtype=dtype).tobytes()
                    assert window not in wire, f"a row of site {data.name} crossed the wire"

    bigger = [site("north", 120, 1), site("south", 120, 2, shift=0.5)]
    _, bigger_tap = federate(bigger)
    assert len(bigger_tap.sent_bytes()) < 1.05 * len(wire)  # 4x the rows, the same traffic: updates only
