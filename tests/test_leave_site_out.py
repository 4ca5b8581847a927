"""Leave-one-site-out on three small synthetic sites (3x4, 6x2, gridless 6x2 pages): a row per
site, the left-out site's pages never trained on, and ``smartecg evaluate --leave-site-out``."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from automl.federated.head import HeadSpec
from automl.federated.leave_site_out import _fold_small, leave_site_out
from automl.federated.protocol import MIN_SITE_PAGES, SiteData
from features.cache import default_cache_dir
from features.dataset import scan
from features.handcrafted import PageFeatures
from tests.cli_helpers import smartecg
from tests.synthetic_sites import SITE_LAYOUTS

SITES = SITE_LAYOUTS


@pytest.fixture(scope="module")
def site_folders(three_sites, tmp_path_factory):
    """DATA/<site>/<Class>/ (the session's three sites, copied): east keeps only 2 MI pages."""
    data = tmp_path_factory.mktemp("loso-sites") / "sites"
    shutil.copytree(three_sites, data)
    for page in sorted((data / "east" / "MI").glob("*.jpg"))[:3]:
        page.unlink()
    for split_file in data.rglob("smartecg_split.csv"):  # this copy splits its own pages
        split_file.unlink()
    return data


@pytest.fixture(scope="module")
def sites(site_folders):
    out = {}
    for name in SITES:
        manifest = scan(site_folders / name, progress=False)
        manifest.frame["site"] = name
        out[name] = manifest
    return out


@pytest.fixture(scope="module")
def result(sites):
    # The session's private cache: the CLI tests' subprocesses then read these pages' rows from it.
    features = PageFeatures(sets=("trace",), n_jobs=-1, cache_dir=default_cache_dir(), progress=False)
    return leave_site_out(sites, features=features, spec=HeadSpec(epochs=2), rounds=2, resamples=100)


@pytest.mark.slow
def test_every_site_is_left_out_once_and_tested_on_all_its_pages(result, sites):
    assert [r.site for r in result.rows] == list(SITES)
    for row in result.rows:
        assert row.pages == len(sites[row.site].frame)
        assert sorted(row.training_sites) == sorted(set(SITES) - {row.site})
        for arm in (row.federated, row.pooled):
            assert 0.0 <= arm["macro_f1"] <= 1.0
            low, high = arm["macro_f1_ci"]
            assert low <= high
    assert result.reference["pages"] > 0 and "scores" in result.reference
    table = result.table()
    assert all(f"| {name} |" in table for name in SITES) and "every site, in-distribution" in table


@pytest.mark.slow
def test_left_out_pages_are_never_training_pages(result, sites):
    for row in result.rows:
        left_out = set(sites[row.site].frame["sha256"])
        assert row.trained_on and not row.trained_on & left_out
        # Exactly the other sites' pages a federation learns and checks on; their holdout pages stay out.
        others = set().union(*(set(sites[n].frame["sha256"]) for n in SITES if n != row.site))
        assert row.trained_on < others


@pytest.mark.slow
def test_a_class_too_small_to_split_trains_only(result):
    assert any("east: MI (2) too few to split" in note for note in result.notes)


def test_a_site_too_small_for_a_client_trains_in_the_largest_ones():
    def site(name, n):
        return SiteData(name, np.zeros((n, 3)), np.arange(n) % 2, np.zeros((2, 3)), np.array([0, 1]))

    folded, notes = _fold_small({"big": site("big", 30), "mid": site("mid", 12), "tiny": site("tiny", 6)})
    assert list(folded) == ["big", "mid"]
    assert len(folded["big"].y_learn) == 36 and len(folded["big"].y_check) == 4
    assert notes == [f"tiny (6 learning pages, under {MIN_SITE_PAGES}) trained in big's client"]


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_json(site_folders, tmp_path):
    out = tmp_path / "loso"
    done = smartecg("evaluate", site_folders, "--leave-site-out", "--sites", "--rounds", 2, "--features", "trace",
                    "--out", out)
    for name in SITES:
        assert f"| {name} |" in done.stdout
    assert "every site, in-distribution" in done.stdout
    written = json.loads((out / "leave_site_out.json").read_text())
    assert sorted(s["site"] for s in written["sites"]) == sorted(SITES)
    assert written["sites_approximated"] is False and written["features"] == ["trace"]
    assert (out / "leave_site_out.md").read_text().startswith("| left-out site |")


@pytest.mark.slow
def test_cli_approximated_sites_say_so(site_folders, tmp_path):
    pooled = tmp_path / "pooled"  # every site's pages in one <Class>/ folder: only the layout tells them apart
    for page in site_folders.glob("*/*/*.jpg"):
        target = pooled / page.parent.name / f"{page.parent.parent.name}-{page.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(page.read_bytes())
    done = smartecg("evaluate", pooled, "--leave-site-out", "--approximate-sites", "--rounds", 2, "--features", "trace")
    assert "APPROXIMATED" in done.stdout
    assert done.stdout.count("| 3x4") + done.stdout.count("| 6x2") >= 2  # page families as sites


def test_cli_asks_how_sites_are_named(tmp_path):
    done = smartecg("evaluate", tmp_path, "--leave-site-out", check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "smartecg: error: say where the sites are: --sites (DATA/<site>/<Class>/), --site-csv FILE, "
        "or --approximate-sites (page families, for data naming no hospital)"]


def test_bootstrap_macro_f1_is_sklearns_over_the_classes_present():
    from sklearn.metrics import f1_score

    from automl.bootstrap import bootstrap_scores

    truth = np.array(["MI", "MI", "Normal", "Normal", "Normal", "MI"], dtype=object)
    predicted = np.array(["MI", "Covid_19", "Normal", "MI", "Normal", "MI"], dtype=object)
    scores = bootstrap_scores(truth, predicted, resamples=200)
    assert scores["macro_f1"] == pytest.approx(f1_score(truth, predicted, labels=["MI", "Normal"], average="macro"))
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["macro_f1_ci"][0] <= scores["macro_f1"] <= scores["macro_f1_ci"][1]
