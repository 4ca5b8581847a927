"""The `smartecg` command as users run it: a real subprocess, real files."""
import json

import numpy as np
import pytest
from cli_helpers import smartecg

from features.cache import FeatureCache
from features.dataset import CLASSES


def test_synth_then_report_then_split(tmp_path):
    data, report = tmp_path / "demo", tmp_path / "report"
    out = smartecg("data", "synth", data, "--per-class", 3, "--seed", 9, "--jobs", 1)
    assert "wrote 15 synthetic pages" in out.stdout
    assert all(len(list((data / c).glob("*.jpg"))) == 3 for c in CLASSES)

    out = smartecg("data", "report", data, "--out", report)
    assert "15 images" in out.stdout and "report.md" in out.stdout
    assert json.loads((report / "summary.json").read_text())["n_images"] == 15

    out = smartecg("data", "split", data)
    assert "holdout" in out.stdout and (data / "smartecg_split.csv").exists()


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda root: (root / "Bradycardia").mkdir(parents=True), "unknown class folder 'Bradycardia'"),
        (lambda root: root.mkdir(), "no class folders found"),
        (lambda root: (root / "Normal").mkdir(parents=True), "no usable image"),
    ],
    ids=["unknown-class", "empty-dataset", "empty-class-folders"],
)
def test_bad_datasets_get_a_one_line_error(tmp_path, make, expected):
    root = tmp_path / "data"
    make(root)
    result = smartecg("data", "report", root, "--out", tmp_path / "out", check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert len(lines) == 1 and lines[0].startswith("smartecg: error:"), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_folder_and_bad_numbers_are_refused(tmp_path):
    result = smartecg("data", "report", tmp_path / "nowhere", "--out", tmp_path / "out", check=False)
    assert result.returncode == 2 and "no such folder" in result.stderr
    result = smartecg("data", "synth", tmp_path / "x", "--per-class", 0, check=False)
    assert result.returncode == 2 and "must be at least 1" in result.stderr


def filled_cache(root, n):
    cache = FeatureCache(root)
    for i in range(n):
        cache.put(f"{i:02d}" + "c" * 62, "cfg", np.zeros(1000))
    return cache


def test_cache_info_counts_the_entries_under_smartecg_cache(tmp_path):
    filled_cache(tmp_path / "features", 3)
    out = smartecg("cache", "info", env={"SMARTECG_CACHE": str(tmp_path)})
    assert str(tmp_path / "features") in out.stdout
    assert "3 entries, 23.9 KiB (size bound 2.0 GiB)" in out.stdout


def test_cache_info_on_a_missing_folder_is_an_empty_cache(tmp_path):
    out = smartecg("cache", "info", "--dir", tmp_path / "nowhere")
    assert "0 entries, 0 B" in out.stdout and not (tmp_path / "nowhere").exists()


def test_cache_clear_yes_deletes_entries_and_nothing_else(tmp_path):
    root = tmp_path / "cache" / "features"
    cache = filled_cache(root, 4)
    beside_root = tmp_path / "cache" / "notes.txt"
    inside_root = root / "cfg" / "00" / "mine.npy"  # in the cache's folders, but not a cache file
    for unrelated in (beside_root, inside_root):
        unrelated.write_text("keep me")
    out = smartecg("cache", "clear", "--dir", root, "--yes")
    assert "4 entries deleted" in out.stdout
    assert cache.stats().entries == 0
    assert beside_root.read_text() == "keep me" and inside_root.read_text() == "keep me"
    assert "0 entries" in smartecg("cache", "info", "--dir", root).stdout


def test_cache_clear_without_yes_and_no_terminal_refuses(tmp_path):
    cache = filled_cache(tmp_path, 2)
    result = smartecg("cache", "clear", "--dir", tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"smartecg: error: not clearing {tmp_path} without confirmation; pass --yes"]
    assert cache.stats().entries == 2
