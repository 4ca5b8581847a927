"""Sites of a dataset (features.sites) and the data report per site, on generated pages."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import smartecg
from features.dataset import CLASSES, DatasetError, Manifest, scan
from features.sites import approximate_sites, pool_sites, scan_sites, site_table, sites_from_csv
from features.survey import survey_pages
from features.synthetic import LayoutMix, generate_dataset

PER_CLASS = 2


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    """DATA/north/<Class>/ all 3x4 pages, DATA/south/<Class>/ all 6x2: two hospitals, two layouts."""
    root = tmp_path_factory.mktemp("sites")
    generate_dataset(root / "north", PER_CLASS, seed=11, progress=False)
    generate_dataset(root / "south", PER_CLASS, seed=12, layouts=LayoutMix(six_by_two=1.0), progress=False)
    return root


def _site_of_paths(sites):
    return {str(p): name for name, m in sites.items() for p in m.frame["path"]}


def test_a_folder_of_site_folders_gives_one_manifest_per_site(two_sites):
    sites = scan_sites(two_sites)

    assert list(sites) == ["north", "south"]
    for name, manifest in sites.items():
        assert isinstance(manifest, Manifest)
        assert manifest.class_counts() == {c: PER_CLASS for c in CLASSES}
        assert set(manifest.frame["site"]) == {name}
        assert all(Path(p).is_relative_to(two_sites / name) for p in manifest.frame["path"])
    table = site_table(sites)
    assert table.loc["north", "total"] == table.loc["south", "total"] == 5 * PER_CLASS
    assert table.loc["total", "MI"] == 2 * PER_CLASS and table.loc["total", "total"] == 10 * PER_CLASS


def test_several_dataset_folders_are_sites_named_after_them(two_sites, tmp_path):
    sites = scan_sites([two_sites / "south", two_sites / "north"])
    assert list(sites) == ["south", "north"]  # the order given
    assert [len(m.frame) for m in sites.values()] == [5 * PER_CLASS] * 2

    # Two folders of one name are told apart by their parents; their shared pages are a warning.
    shutil.copytree(two_sites / "north", tmp_path / "a" / "ecg")
    shutil.copytree(two_sites / "north", tmp_path / "b" / "ecg")
    twins = scan_sites([tmp_path / "a" / "ecg", tmp_path / "b" / "ecg"])
    assert list(twins) == ["a/ecg", "b/ecg"]
    assert any("same bytes as pages of b/ecg" in w for w in twins["a/ecg"].warnings)
    with pytest.raises(DatasetError, match="given twice"):
        scan_sites([tmp_path / "a" / "ecg", tmp_path / "a" / ".." / "a" / "ecg"])


def test_a_site_csv_cuts_one_dataset_and_names_the_pages_it_misses(two_sites, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(two_sites / "north", data)
    pages = sorted(p.relative_to(data) for p in data.glob("*/*.jpg"))
    # First page of each class to "east", the second to "west" (absolute paths), one stale row.
    rows = [f"{p},east" if p.name.endswith("0000.jpg") else f"{data / p},west" for p in pages]
    (tmp_path / "sites.csv").write_text("path,site\n" + "\n".join(rows + ["MI/gone.jpg,west"]) + "\n")

    sites = scan_sites([data], site_csv=tmp_path / "sites.csv")
    assert list(sites) == ["east", "west"]
    assert [m.class_counts() for m in sites.values()] == [{c: 1 for c in CLASSES}] * 2
    assert sites["west"].root == data and set(sites["west"].frame["site"]) == {"west"}
    assert any("gone.jpg" in w for w in sites["west"].warnings) and not sites["east"].warnings

    (tmp_path / "short.csv").write_text("path,site\n" + "\n".join(rows[:-3]) + "\n")
    with pytest.raises(DatasetError, match=r"3 page\(s\) of .* have no site, e.g. .*Normal.*add a `path,site` row"):
        sites_from_csv(scan(data), tmp_path / "short.csv")
    (tmp_path / "bad.csv").write_text("file,hospital\nMI/a.jpg,x\n")
    with pytest.raises(DatasetError, match="expected path,site"):
        sites_from_csv(scan(data), tmp_path / "bad.csv")


def test_an_empty_or_one_class_site_is_refused_by_name(two_sites, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(two_sites / "north", root / "north")
    (root / "east").mkdir()
    with pytest.raises(DatasetError, match=r"^site east: .*no class folders"):
        scan_sites(root)

    shutil.rmtree(root / "east")
    shutil.copytree(two_sites / "south" / "MI", root / "east" / "MI")
    with pytest.raises(DatasetError, match=r"^site east .*all MI; a site needs pages of at least two classes"):
        scan_sites(root)

    with pytest.raises(DatasetError, match="class folders .* beside other folders"):
        shutil.copytree(two_sites / "south" / "Normal", root / "Normal")
        scan_sites(root)


def test_approximate_sites_group_pages_by_layout_family(two_sites):
    pooled = pool_sites(scan_sites(two_sites))
    survey = survey_pages([str(p) for p in pooled.frame["path"]], progress=False)

    sites = approximate_sites(pooled, survey)

    # Each family holds the pages of one hospital: the layout told them apart.
    true_site = _site_of_paths(scan_sites(two_sites))
    assert len(sites) == 2
    for name, manifest in sites.items():
        origins = {true_site[str(p)] for p in manifest.frame["path"]}
        assert origins == ({"north"} if name.startswith("3x4") else {"south"}), name
        assert set(manifest.frame["site"]) == {name}
        assert "approximated" in manifest.warnings[0]
    assert sum(len(m.frame) for m in sites.values()) == len(pooled.frame)


def test_small_families_merge_into_the_nearest_so_no_site_is_tiny(tmp_path):
    # 12 big 3x4 pages, small families of each layout, and one odd layout.
    families = ([("3x4_rhythm", "landscape_ge2000")] * 12 + [("3x4_rhythm", "portrait_lt1000")] * 3
                + [("6x2", "landscape_ge2000")] * 6 + [("6x2_rhythm", "landscape_ge2000")] * 5
                + [("9x1", "portrait_lt1000")] * 2)
    frame = pd.DataFrame({"path": [tmp_path / f"{i}.jpg" for i in range(len(families))],
                          "label": [CLASSES[i % 5] for i in range(len(families))]})
    manifest = Manifest(root=tmp_path, layout="flat", frame=frame)
    survey = pd.DataFrame(families, columns=["layout", "size_bucket"])

    sites = approximate_sites(manifest, survey)

    assert {name: len(m.frame) for name, m in sites.items()} == {
        "3x4_rhythm|landscape_ge2000": 17,  # its own small size family, and the odd layout (too few for `other`)
        "6x2_any|any_size": 11,  # 6x2 with and without the rhythm strip, together big enough
    }
    assert "6x2_rhythm|landscape_ge2000" in sites["6x2_any|any_size"].warnings[0]


def test_data_report_with_sites_refuses_a_folder_of_class_folders(two_sites):
    result = smartecg("data", "report", two_sites / "north", "--sites", "--out", two_sites / "unused", check=False)
    assert result.returncode == 2
    assert "holds class folders, not site folders" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_data_report_with_sites_writes_pages_and_layout_audit_per_site(two_sites, tmp_path):
    out = tmp_path / "report"
    result = smartecg("data", "report", two_sites, "--sites", "--out", out)
    assert "2 site(s): north 10, south 10" in result.stdout

    sites = json.loads((out / "summary.json").read_text())["sites"]
    assert sites["approximate"] is False
    assert sites["pages"]["north"] == {**{c: PER_CLASS for c in CLASSES}, "total": 5 * PER_CLASS}
    assert sites["pages"]["total"]["total"] == 10 * PER_CLASS
    north, south = sites["layout_audit"]["north"], sites["layout_audit"]["south"]
    assert list(north["table"]) == ["3x4_rhythm"] and north["n_images"] == 5 * PER_CLASS
    assert all(layout.startswith("6x2") for layout in south["table"]) and not south["flagged"]
    markdown = (out / "report.md").read_text()
    assert "## Sites" in markdown and "### Layout audit per site" in markdown
    assert f"| north | {' | '.join([str(PER_CLASS)] * 5)} | {5 * PER_CLASS} |" in markdown
    assert "Approximation" not in markdown


@pytest.mark.slow
def test_data_report_can_approximate_sites_by_page_family_and_says_so(two_sites, tmp_path):
    # Without names, page families stand in for the sites, and the report says it is an approximation.
    smartecg("data", "report", two_sites / "north", "--approximate-sites", "--out", tmp_path / "approx")
    approx = json.loads((tmp_path / "approx" / "summary.json").read_text())["sites"]
    assert approx["approximate"] is True and approx["pages"]["total"]["total"] == 5 * PER_CLASS
    assert all(site.startswith("3x4_rhythm|") for site in approx["pages"] if site != "total")
    assert "**Approximation:**" in (tmp_path / "approx" / "report.md").read_text()
