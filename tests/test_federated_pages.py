"""Federated training on generated pages (issue 25): three sites, each with its own layout mix.

The acceptance: the federated model's macro-F1 on a common test set within 0.05 of the same head
trained on the pooled pages; what the sites send holds no page bytes and no page's features; the
server and the sites as separate processes on loopback; and the one-command simulation, its
MLflow runs and its registration.
"""
from __future__ import annotations

import json
import re
import subprocess
import time

import numpy as np
import pytest

from features.synthetic import LayoutMix, generate_dataset
from tests.cli_helpers import free_port, noise_in, smartecg, smartecg_command
from tests.synthetic_sites import SITE_LAYOUTS

pytestmark = pytest.mark.slow

ROUNDS = 20  # the default


@pytest.fixture(scope="module")
def sites(three_sites, tmp_path_factory):
    test = generate_dataset(tmp_path_factory.mktemp("common") / "test", 8, seed=399,
                            layouts=LayoutMix(six_by_two=0.5, gridless=0.3), progress=False)
    return three_sites, test


def test_sites_as_processes_match_pooled_training_and_send_no_page(sites, tmp_path):
    from automl.federated.head import HeadSpec
    from automl.federated.protocol import Coordinator, SiteClient, SiteData, run_in_process
    from automl.federated.run import FederationSettings, final_model
    from automl.federated.sites_data import site_pages, to_site_data
    from automl.tracking import use_store
    from features.dataset import CLASSES, scan
    from tests.wire_tap import WireTap

    root, test = sites
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port = free_port()
    tap = WireTap(("127.0.0.1", port))
    server = subprocess.Popen(smartecg_command() + ["federated", "server", "--address", f"127.0.0.1:{port}",
                                                    "--min-sites", "3", "--holdout", str(test),
                                                    "--tracking-uri", uri],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    clients = [subprocess.Popen(smartecg_command() + ["federated", "client", "--site", str(root / name),
                                                      "--server", tap.address],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
               for name in SITE_LAYOUTS]
    try:
        _wait_unless_a_site_fails(server, clients, seconds=600)
        out, err = server.communicate(timeout=60)
        said = [client.communicate(timeout=60) for client in clients]
    finally:
        tap.close()
        for process in (server, *clients):
            process.kill()
    assert server.returncode == 0, err
    for client, (client_out, client_err) in zip(clients, said):
        assert client.returncode == 0, client_err
        assert "federation has ended" in client_out and not noise_in(client_out + client_err)
    assert f"round {ROUNDS}/{ROUNDS}" in out and "registered smartecg version 1 as champion" in out
    assert not noise_in(out + err), noise_in(out + err)

    client = use_store(uri)
    version = client.get_model_version("smartecg", "1")
    federated_f1 = float(version.tags["holdout_macro_f1"])
    assert version.tags["engine"] == "federated"

    # The same head, the same rounds, on the same learning pages pooled at one site.
    settings = FederationSettings(rounds=ROUNDS)
    features = settings.page_features()
    parts = [to_site_data(site_pages(name, scan(root / name, progress=False)), features) for name in SITE_LAYOUTS]
    pooled_data = SiteData("pooled", *(np.concatenate([getattr(p, key) for p in parts])
                                       for key in ("X_learn", "y_learn", "X_check", "y_check")))
    pooled = run_in_process([SiteClient(pooled_data, len(CLASSES), HeadSpec())], Coordinator(CLASSES, HeadSpec(), ROUNDS))
    test_frame = scan(test, progress=False).frame
    proba = final_model(pooled, settings, 1).proba_from_features(features.transform(list(test_frame["path"])))
    from automl.evaluate import evaluate

    pooled_f1 = evaluate(test_frame["label"], proba, CLASSES).metrics["macro_f1"]
    print(f"common test set ({len(test_frame)} pages): federated macro-F1 {federated_f1:.3f}, pooled {pooled_f1:.3f}")
    assert abs(federated_f1 - pooled_f1) <= 0.05

    # What crossed the wire from the sites: their sums are there (the search looks at the right bytes) ...
    wire = tap.sent_bytes()
    assert len([c for c in tap.sent if len(c) > 1000]) == 3  # one conversation per site (port probes are empty)
    _, total, _ = _sums(parts[0].X_learn)
    assert total.astype("<f8").tobytes() in wire
    # ... but no stretch of any page file, and no run of four values of any page's feature row.
    for name in SITE_LAYOUTS:
        for page in sorted((root / name).rglob("*.jpg")):
            data = page.read_bytes()
            for start in range(len(data) // 4, len(data) - 64, max(len(data) // 6, 64)):
                assert data[start:start + 64] not in wire, f"bytes of {page.name} crossed the wire"
    for part in parts:
        for row in np.concatenate([part.X_learn, part.X_check]):
            window = _distinctive_window(row)
            for dtype in ("<f8", "<f4"):
                assert np.asarray(window, dtype=dtype).tobytes() not in wire, f"a feature row of {part.name} was sent"


def test_one_command_simulation_logs_each_round_and_registers(sites, tmp_path):
    from automl.tracking import use_store

    root, _ = sites
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = smartecg("federated", "--sites", root, "--rounds", 3, "--tracking-uri", uri, timeout=600)
    out = result.stdout
    for name in SITE_LAYOUTS:
        assert re.search(rf"site {name}: \d+ learning pages", out)
    assert "round 3/3: macro-F1" in out and "registered smartecg version 1 as champion" in out
    assert not noise_in(out + result.stderr), noise_in(out + result.stderr)

    client = use_store(uri)
    experiment = client.get_experiment_by_name("smartecg-federated")
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.data.tags.get("smartecg.kind") == "federated"]
    rounds = [r for r in runs if r.data.tags.get("smartecg.kind") == "federated-round"]
    assert len(parent) == 1 and len(rounds) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in rounds} == {parent[0].info.run_id}
    for run in rounds:
        for name in SITE_LAYOUTS:
            assert 0.0 <= run.data.metrics[f"site_{name}_macro_f1"] <= 1.0
        assert run.data.metrics["global_pages"] > 0
    assert "holdout_macro_f1" in parent[0].data.metrics
    assert json.loads(parent[0].data.params["pages_per_site"].replace("'", '"')).keys() == set(SITE_LAYOUTS)
    version = client.get_model_version("smartecg", "1")
    assert "federated linear head" in version.description and "3 sites" in version.description


def _wait_unless_a_site_fails(server, clients, seconds: float) -> None:
    """Until the server ends; a site that fails ends the wait (the server would wait for it in vain)."""
    deadline = time.monotonic() + seconds
    while server.poll() is None:
        for client in clients:
            if client.poll() not in (None, 0):
                raise AssertionError(f"a site failed: {client.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("the federation did not end in time")
        time.sleep(0.5)


def _sums(X):
    from automl.federated.head import feature_sums

    return feature_sums(X)


def _distinctive_window(row: np.ndarray) -> np.ndarray:
    """Four consecutive values of a feature row that are non-zero and distinct (zeros occur anywhere)."""
    for start in range(len(row) - 3):
        window = row[start:start + 4]
        if np.all(np.isfinite(window)) and np.all(window != 0) and len(set(window.tolist())) == 4:
            return window
    raise AssertionError("no distinctive run of four values in a feature row")

