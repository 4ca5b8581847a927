"""The `smartecg` command as users run it: a real subprocess, real files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from features.dataset import CLASSES


def smartecg(*args, check=True):
    script = Path(sys.executable).with_name("smartecg")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "automl.cli"]
    result = subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


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
