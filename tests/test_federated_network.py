"""Federated averaging of a Keras network (issue 25) on generated pages: three sites, a tiny CNN.

The same rounds in one process and over Flower give the same weights (Flower only carries the
protocol); the final ECGModel reads a page image and gives probabilities; every round has each
site's figures; and a site set for the head refuses a network federation (and the reverse).
No accuracy is asserted: two rounds of a tiny CNN on 15 learning pages a site learn little.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.synthetic_sites import SITE_LAYOUTS

pytestmark = pytest.mark.slow

ROUNDS = 2


@pytest.fixture(scope="module")
def spec():
    from automl.federated.network import NetworkSpec

    return NetworkSpec(width=4, depth=2, size=(32, 48), epochs=1, batch_size=8)


@pytest.fixture(scope="module")
def sites(three_sites, spec):
    """Each site's tensors (learning and check pages) and one of its holdout pages."""
    from automl.federated.sites_data import site_pages, to_site_data
    from features.dataset import scan

    data, pages = [], []
    for name in SITE_LAYOUTS:
        split = site_pages(name, scan(three_sites / name, progress=False))
        data.append(to_site_data(split, spec.tensors()))
        pages.append(split.part("holdout")["path"].iloc[0])
    return data, pages


def federate(sites, spec, transport: str):
    from automl.federated.flower import simulate
    from automl.federated.network import NetworkCoordinator, NetworkSiteClient
    from automl.federated.protocol import run_in_process
    from features.dataset import CLASSES

    clients = [NetworkSiteClient(data, len(CLASSES), spec) for data in sites]
    coordinator = NetworkCoordinator(list(CLASSES), spec, ROUNDS, seed=3)
    return (simulate if transport == "flower" else run_in_process)(clients, coordinator)


def test_flower_carries_the_in_process_rounds_and_the_model_reads_pages(sites, spec):
    from automl.federated.network import NetworkCoordinator, network_model
    from features.dataset import CLASSES

    data, pages = sites
    alone = federate(data, spec, "in-process")
    flower = federate(data, spec, "flower")

    assert len(alone.weights) == len(flower.weights) > 4
    for ours, theirs in zip(flower.weights, alone.weights):  # seeded, one site at a time: bit for bit
        np.testing.assert_array_equal(ours, theirs)
    start = NetworkCoordinator(list(CLASSES), spec, ROUNDS, seed=3)
    start.gather_statistics([np.ones(len(CLASSES))])
    assert max(np.abs(w - w0).max() for w, w0 in zip(flower.weights, start.weights)) > 1e-3  # the sites trained
    assert flower.temperature == alone.temperature
    assert flower.pages_per_site == {d.name: len(d.y_learn) for d in data}
    assert [r.round for r in flower.rounds] == list(range(1, ROUNDS + 1))
    for report in flower.rounds:
        assert set(report.sites) == set(SITE_LAYOUTS)
        assert report.overall["pages"] == sum(len(d.y_check) for d in data)
        assert all(0.0 <= figures["accuracy"] <= 1.0 for figures in report.sites.values())

    model = network_model(flower, spec, list(CLASSES))
    assert model.is_network and model.calibrator.temperature_ == flower.temperature
    proba = model.predict_proba(pages)
    assert proba.shape == (len(pages), len(CLASSES))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # The page's tensor through the global weights: the model is the federation's network.
    raw = model.uncalibrated_proba(spec.tensors().transform(pages))
    assert np.array_equal(raw.argmax(axis=1), proba.argmax(axis=1))


def test_a_site_set_for_another_model_refuses(sites, spec):
    from automl.federated.head import HeadSpec
    from automl.federated.network import NetworkCoordinator, NetworkSiteClient
    from automl.federated.protocol import Coordinator, SiteClient
    from features.dataset import CLASSES

    data, _ = sites
    network_round_one = NetworkCoordinator(list(CLASSES), spec, 1).instruction(1)[1]
    head_site = SiteClient(data[0], len(CLASSES), HeadSpec())
    with pytest.raises(ValueError, match=r"server trains the model cnn\(.*set for head.*--model"):
        head_site.fit([], network_round_one)

    head_round_one = Coordinator(list(CLASSES), HeadSpec(), 1, features="signals:2").instruction(1)[1]
    network_site = NetworkSiteClient(data[0], len(CLASSES), spec)
    with pytest.raises(ValueError, match=r"server trains the model head, this site is set for cnn"):
        network_site.fit([], head_round_one)
    larger = NetworkCoordinator(list(CLASSES), replace(spec, size=(64, 96)), 1).instruction(1)[1]
    with pytest.raises(ValueError, match="server trains on features tensors:leads:64x96"):  # not this site's tensors
        network_site.fit([], larger)
    assert network_site.fit([], network_round_one)[1] == len(data[0].y_learn)  # the same setup takes part
