"""Session-wide synthetic datasets, made once with features.synthetic (never real images)."""
from __future__ import annotations

import pytest

from features.synthetic import generate_dataset


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test writes its caches (features, scans, demo data) under a temporary folder, never ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SMARTECG_CACHE", str(tmp_path_factory.mktemp("smartecg-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def synthetic_train(tmp_path_factory):
    """40 pages per class (seed 1): the size the foundation issue's learnability check asks for."""
    return generate_dataset(tmp_path_factory.mktemp("synth-train"), 40, seed=1)


@pytest.fixture(scope="session")
def synthetic_test(tmp_path_factory):
    """12 pages per class from another seed, to score on pages the model never saw."""
    return generate_dataset(tmp_path_factory.mktemp("synth-test"), 12, seed=2)


@pytest.fixture(scope="session")
def synthetic_confounded(tmp_path_factory):
    """COVID pages as small portrait scans: the public dataset's page-size trap."""
    return generate_dataset(tmp_path_factory.mktemp("synth-confounded"), 20, seed=3, confound_covid=True)


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """3 pages per class, for tests that only need a valid dataset."""
    return generate_dataset(tmp_path_factory.mktemp("synth-tiny"), 3, seed=4)
