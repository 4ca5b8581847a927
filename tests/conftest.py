"""Session-wide synthetic datasets, made once with features.synthetic (never real images)."""
from __future__ import annotations

import pytest

from features.synthetic import generate_dataset
from tests.synthetic_sites import SITE_LAYOUTS


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


@pytest.fixture(scope="session")
def three_sites(tmp_path_factory):
    """DATA/<site>/<Class>/, 5 pages per class at each of SITE_LAYOUTS' sites (15 learning pages each).

    Shared: tests that change it work on a copy (the saved splits beside the pages are the same
    for every test, seed 0)."""
    root = tmp_path_factory.mktemp("three-sites")
    for i, (name, layouts) in enumerate(SITE_LAYOUTS.items()):
        generate_dataset(root / name, 5, seed=300 + i, layouts=layouts, progress=False)
        (root / name / "synthetic_meta.jsonl").unlink()
    return root
