"""Tests for features.dataset: scan, canonical_class, assign_splits, Manifest.

Every image is made here with Pillow in tmp_path; nothing is read from outside.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.dataset import (
    CLASSES,
    SPLIT_FILE,
    SPLITS,
    DatasetError,
    Manifest,
    assign_splits,
    canonical_class,
    scan,
)

COLUMNS = ["path", "label", "sha256", "width", "height", "bytes", "mode", "format", "given_split"]
_counter = itertools.count(1)


# ----------------------------------------------------------------------------- helpers


def unique_image(size=(64, 48), mode="RGB") -> Image.Image:
    """A small image whose bytes differ from every other one made in this session."""
    n = next(_counter)
    colour = (n % 251, (n * 7) % 253, (n // 251) % 256)
    im = Image.new("RGB", size, colour)
    im.putpixel((0, 0), (n % 256, (n >> 8) % 256, 255))
    return im.convert(mode) if mode != "RGB" else im


def make_image(path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    unique_image(**kw).save(path)
    return path


def make_class(folder: Path, n: int, ext: str = ".png") -> list[Path]:
    return [make_image(folder / f"img_{i:03d}{ext}") for i in range(n)]


def make_flat(root: Path, counts: dict[str, int], ext: str = ".png") -> dict[str, list[Path]]:
    return {label: make_class(root / label, n, ext) for label, n in counts.items()}


def truncated_jpeg_bytes(w: int = 100, h: int = 80) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


def split_map(frame: pd.DataFrame) -> dict[str, str]:
    return dict(zip(frame["sha256"], frame["split"]))


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


FIVE = {c: 10 for c in CLASSES}


# ----------------------------------------------------------------------------- class names

ORIGINAL_NAMES = {
    "ECG Images of Myocardial Infarction Patients (240x12=2880)": "MI",
    "ECG Images of Patient that have History of MI (172x12=2064)": "MI_History",
    "ECG Images of Patient that have abnormal heartbeat (233x12=2796)": "Abnormal_HeartBeat",
    "Normal Person ECG Images (284x12=3408)": "Normal",
    "ECG Images of COVID-19 Patients (250)": "Covid_19",
}


@pytest.mark.parametrize(
    "name, expected",
    list(ORIGINAL_NAMES.items())
    + [(c, c) for c in CLASSES]
    + [
        ("normal", "Normal"),
        ("NORMAL", "Normal"),
        ("MI history", "MI_History"),
        ("mi-history", "MI_History"),
        ("covid 19", "Covid_19"),
        ("COVID-19", "Covid_19"),
        ("abnormal_heartbeat", "Abnormal_HeartBeat"),
        ("Abnormal Heart Beat", "Abnormal_HeartBeat"),
        ("mi", "MI"),
    ],
)
def test_canonical_class_aliases(name, expected):
    assert canonical_class(name) == expected


@pytest.mark.parametrize("name", ["cats", "", "train", "Normal2", "MIX", "heart", "covid 20", "(Normal)"])
def test_canonical_class_unknown_is_none(name):
    assert canonical_class(name) is None


def test_scan_with_original_folder_names(tmp_path):
    for folder in ORIGINAL_NAMES:
        make_class(tmp_path / folder, 2, ".jpg")
    m = scan(tmp_path)
    assert m.layout == "flat"
    assert sorted(m.frame["label"]) == sorted([c for c in ORIGINAL_NAMES.values() for _ in range(2)])
    for path, label in zip(m.frame["path"], m.frame["label"]):
        assert ORIGINAL_NAMES[Path(path).parent.name] == label
    assert m.classes == list(CLASSES)
    assert m.class_counts() == {c: 2 for c in CLASSES}


# ----------------------------------------------------------------------------- dataset-level errors


def test_unknown_class_folder_is_an_error_naming_it(tmp_path):
    make_class(tmp_path / "Normal", 2)
    make_class(tmp_path / "Holiday Photos", 1)
    with pytest.raises(DatasetError, match="Holiday Photos"):
        scan(tmp_path)


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        scan(tmp_path / "nowhere")


def test_no_class_folders_is_an_error(tmp_path):
    make_image(tmp_path / "loose.png")  # an image straight in root is not a class folder
    with pytest.raises(DatasetError, match="no class folders"):
        scan(tmp_path)


def test_class_folders_without_images_is_an_error(tmp_path):
    (tmp_path / "Normal").mkdir()
    (tmp_path / "MI").mkdir()
    (tmp_path / "MI" / "readme.txt").write_text("nothing here")
    with pytest.raises(DatasetError, match="no usable image"):
        scan(tmp_path)


def test_empty_class_folder_warns_and_scan_goes_on(tmp_path, caplog):
    make_flat(tmp_path, {"MI": 3, "Normal": 2})
    (tmp_path / "Covid_19").mkdir()
    with caplog.at_level(logging.WARNING, logger="features.dataset"):
        m = scan(tmp_path)
    assert len(m.warnings) == 1
    assert "Covid_19" in m.warnings[0] and "empty" in m.warnings[0]
    assert m.class_counts() == {"Abnormal_HeartBeat": 0, "Covid_19": 0, "MI": 3, "MI_History": 0, "Normal": 2}
    assert m.classes == ["MI", "Normal"]
    assert any("Covid_19" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- bad files


def test_bad_files_are_skipped_with_reasons(tmp_path, caplog):
    good = make_flat(tmp_path, {"MI": 3, "Normal": 3})
    mi = tmp_path / "MI"
    bad = {
        mi / "cut.jpg": "truncated",
        mi / "letter.jpg": "not an image",
        mi / "notes.txt": "not an image file type",
        mi / "huge.png": "megapixels",
        tmp_path / "Normal" / "zero.jpg": "empty",
    }
    (mi / "cut.jpg").write_bytes(truncated_jpeg_bytes())
    (mi / "letter.jpg").write_text("Dear reader, this is not a JPEG.\n" * 10)
    (mi / "notes.txt").write_text("patient notes")
    Image.new("L", (200, 150), 255).save(mi / "huge.png")  # 30000 px > max_pixels below
    (tmp_path / "Normal" / "zero.jpg").write_bytes(b"")

    with caplog.at_level(logging.WARNING, logger="features.dataset"):
        m = scan(tmp_path, max_pixels=10_000)  # good images 3072 px, the truncated JPEG 8000 px

    reasons = {s.path: s.reason for s in m.skipped}
    assert set(reasons) == set(bad)
    for path, needle in bad.items():
        assert needle in reasons[path], (path, reasons[path])
    assert sorted(map(Path, m.frame["path"])) == sorted(good["MI"] + good["Normal"])
    assert m.class_counts()["MI"] == 3 and m.class_counts()["Normal"] == 3
    logged = caplog.text
    for path in bad:
        assert path.name in logged


def test_nested_and_hidden_files(tmp_path):
    make_class(tmp_path / "MI", 2)
    nested = make_image(tmp_path / "MI" / "session2" / "page.png")
    make_image(tmp_path / "MI" / ".thumb.png")  # hidden: skipped, said
    make_image(tmp_path / ".cache" / "x.png")  # hidden folder in root: not a class
    m = scan(tmp_path)
    paths = set(map(Path, m.frame["path"]))
    assert nested in paths
    assert len(paths) == 3
    assert {s.path: s.reason for s in m.skipped} == {
        tmp_path / "MI" / ".thumb.png": "hidden file (name starts with '.'), not read",
        tmp_path / ".cache": "hidden folder (name starts with '.'), not read",
    }


def test_odd_names_junk_folders_and_oversized_files_each_get_one_line_and_the_scan_goes_on(tmp_path, caplog):
    good = make_class(tmp_path / "Normal", 2)
    latin1 = os.path.join(os.fsencode(tmp_path / "Normal"), b"caf\xe9.png")  # a Windows-1252 name
    with open(latin1, "wb") as fh:
        unique_image().save(fh, "PNG")
    make_image(tmp_path / "__MACOSX" / "Normal" / "._img_000.png")  # at the root: not a class folder
    make_image(tmp_path / "Normal" / "__MACOSX" / "._img_001.png")  # inside a class folder
    make_image(tmp_path / "Normal" / ".thumbs" / "img_000.png")
    make_image(tmp_path / "Normal" / ".img_000.png")
    with open(tmp_path / "Normal" / "scan.tif", "wb") as fh:
        fh.truncate(51 * 2**20)  # sparse: the size of a page that is not one, without the disk it takes
    with caplog.at_level(logging.WARNING, logger="features.dataset"):
        m = scan(tmp_path)
    assert sorted(map(Path, m.frame["path"])) == sorted(good)
    reasons = {str(s.path): s.reason for s in m.skipped}
    shown = str(tmp_path / "Normal" / "caf\\xe9.png")
    assert set(reasons) == {shown, str(tmp_path / "__MACOSX"), str(tmp_path / "Normal" / "__MACOSX"),
                            str(tmp_path / "Normal" / ".thumbs"), str(tmp_path / "Normal" / ".img_000.png"),
                            str(tmp_path / "Normal" / "scan.tif")}
    assert "not UTF-8" in reasons[shown] and "rename" in reasons[shown]
    assert "macOS archive leftovers" in reasons[str(tmp_path / "__MACOSX")]
    assert reasons[str(tmp_path / "Normal" / "scan.tif")].startswith("51 MB, larger than any ECG page (limit 50 MB)")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert sorted(line.split(":")[0] for line in lines) == sorted(f"skipped {path}" for path in reasons)


# ----------------------------------------------------------------------------- accepted types and columns


@pytest.mark.parametrize(
    "name, fmt",
    [("a.jpg", "JPEG"), ("b.jpeg", "JPEG"), ("c.png", "PNG"), ("d.bmp", "BMP"), ("e.tif", "TIFF"),
     ("f.tiff", "TIFF"), ("G.JPG", "JPEG"), ("H.PNG", "PNG")],
)
def test_each_image_type_is_accepted(tmp_path, name, fmt):
    path = make_image(tmp_path / "Normal" / name, size=(70, 40))
    m = scan(tmp_path)
    assert m.skipped == []
    row = m.frame.iloc[0]
    assert Path(row["path"]) == path
    assert row["format"] == fmt
    assert (row["width"], row["height"]) == (70, 40)


def test_manifest_columns_and_values(tmp_path):
    rgb = make_image(tmp_path / "MI" / "rgb.jpg", size=(80, 50))
    grey = make_image(tmp_path / "Normal" / "grey.png", size=(30, 60), mode="L")
    rotated = tmp_path / "MI" / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    unique_image(size=(90, 40)).save(rotated, exif=exif)

    m = scan(tmp_path)
    assert isinstance(m, Manifest)
    assert m.root == tmp_path and m.layout == "flat"
    assert list(m.frame.columns) == COLUMNS
    assert len(m.frame) == 3
    rows = {Path(r["path"]): r for _, r in m.frame.iterrows()}
    expected = {
        rgb: ("MI", 80, 50, "RGB", "JPEG"),
        grey: ("Normal", 30, 60, "L", "PNG"),
        rotated: ("MI", 40, 90, "RGB", "JPEG"),  # displayed size: EXIF orientation applied
    }
    for path, (label, w, h, mode, fmt) in expected.items():
        r = rows[path]
        data = path.read_bytes()
        assert r["label"] == label
        assert r["sha256"] == hashlib.sha256(data).hexdigest()
        assert (r["width"], r["height"]) == (w, h)
        assert r["bytes"] == len(data)
        assert (r["mode"], r["format"]) == (mode, fmt)
        assert r["given_split"] == ""


# ----------------------------------------------------------------------------- duplicates


def test_same_bytes_in_two_classes_is_an_error_naming_both(tmp_path):
    make_flat(tmp_path, {"MI": 3, "Normal": 3})
    original = tmp_path / "MI" / "img_001.png"
    copy = tmp_path / "Normal" / "copied_from_mi.png"
    shutil.copyfile(original, copy)
    with pytest.raises(DatasetError) as info:
        scan(tmp_path)
    msg = str(info.value)
    assert str(original) in msg and str(copy) in msg
    assert "MI" in msg and "Normal" in msg


def test_same_bytes_twice_in_one_class_keeps_one(tmp_path, caplog):
    make_flat(tmp_path, {"MI": 3, "Normal": 3})
    original = tmp_path / "MI" / "img_001.png"
    copy = tmp_path / "MI" / "zz_copy.png"
    shutil.copyfile(original, copy)
    with caplog.at_level(logging.WARNING, logger="features.dataset"):
        m = scan(tmp_path)
    assert len(m.frame) == 6
    assert m.frame["sha256"].is_unique
    paths = set(map(Path, m.frame["path"]))
    assert (original in paths) != (copy in paths)  # exactly one of them is kept
    assert len(m.dropped_duplicates) == 1
    dropped, kept = m.dropped_duplicates[0]
    assert {Path(dropped), Path(kept)} == {original, copy}
    assert Path(kept) in paths and Path(dropped) not in paths
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "duplicate" in r.getMessage()]
    assert len(warnings) == 1
    assert str(dropped) in warnings[0].getMessage() and str(kept) in warnings[0].getMessage()


# ----------------------------------------------------------------------------- splits


def test_assign_splits_stratified_every_class_every_split(tmp_path):
    make_flat(tmp_path, {c: 20 for c in CLASSES})
    m = scan(tmp_path)
    f = assign_splits(m)
    assert len(f) == len(m.frame) == 100
    assert set(f["split"]) == set(SPLITS)
    assert list(f.columns) == COLUMNS + ["split"]
    for label, group in f.groupby("label"):
        counts = group["split"].value_counts()
        assert set(counts.index) == set(SPLITS), label
        assert abs(counts["validation"] - 0.15 * 20) <= 1
        assert abs(counts["holdout"] - 0.15 * 20) <= 1
        assert abs(counts["train"] - 0.70 * 20) <= 2
    # the manifest's own frame is not modified
    assert "split" not in m.frame.columns


def test_custom_fractions_and_bad_fractions(tmp_path):
    make_flat(tmp_path, {"MI": 20, "Normal": 20})
    f = assign_splits(scan(tmp_path), fractions=(0.5, 0.25, 0.25))
    for _, group in f.groupby("label"):
        assert group["split"].value_counts().to_dict() == {"train": 10, "validation": 5, "holdout": 5}
    for bad in [(0.7, 0.3), (0.8, 0.2, 0.0), (0.5, 0.5, 0.5)]:
        with pytest.raises(ValueError, match="fractions"):
            assign_splits(scan(tmp_path), fractions=bad, split_file=tmp_path.parent / "other.csv")


def test_split_file_written_beside_data(tmp_path):
    make_flat(tmp_path, {"MI": 10, "Normal": 10, "Covid_19": 10})
    f = assign_splits(scan(tmp_path), seed=3)
    path = tmp_path / SPLIT_FILE
    assert path.is_file()
    first = path.read_text().splitlines()[0]
    assert first.startswith("# smartecg split v1") and "seed=3" in first
    saved = pd.read_csv(path, comment="#")
    assert {"sha256", "label", "split", "path"} <= set(saved.columns)
    assert dict(zip(saved["sha256"], saved["split"])) == split_map(f)
    # paths are stored relative to the split file, so the folder can move
    for rel in saved["path"]:
        assert not os.path.isabs(rel) and (tmp_path / rel).is_file()
    assert not list(tmp_path.glob(".split-*"))  # no temp file left behind


def test_rerun_gives_identical_split(tmp_path):
    make_flat(tmp_path, FIVE)
    first = split_map(assign_splits(scan(tmp_path)))
    second = split_map(assign_splits(scan(tmp_path)))
    assert first == second


def test_seed_matters_for_a_fresh_split_but_not_for_a_saved_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_flat(a, {c: 12 for c in CLASSES})
    shutil.copytree(a, b)
    seed0 = split_map(assign_splits(scan(a), seed=0))
    fresh_seed1 = split_map(assign_splits(scan(b), seed=1))
    assert seed0.keys() == fresh_seed1.keys()
    assert seed0 != fresh_seed1  # the seed does change a fresh split...
    rerun_seed1 = split_map(assign_splits(scan(a), seed=1))
    assert rerun_seed1 == seed0  # ...but a saved split is reused: the holdout never moves


def test_new_images_go_to_train_old_ones_keep_their_split(tmp_path, caplog):
    make_flat(tmp_path, {"MI": 10, "Normal": 10})
    before = split_map(assign_splits(scan(tmp_path)))
    new = make_class(tmp_path / "MI" / "batch2", 3) + [make_image(tmp_path / "Normal" / "late.png")]
    with caplog.at_level(logging.INFO, logger="features.dataset"):
        f = assign_splits(scan(tmp_path))
    after = split_map(f)
    assert len(after) == len(before) + 4
    for sha, split in before.items():
        assert after[sha] == split
    new_shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in new}
    assert {after[s] for s in new_shas} == {"train"}
    assert "new image" in caplog.text
    # and the new assignments are saved too
    saved = pd.read_csv(tmp_path / SPLIT_FILE, comment="#")
    assert new_shas <= set(saved["sha256"])


def test_removed_then_restored_image_keeps_its_split(tmp_path):
    """Regression (was a bug): the split file is rewritten from the current scan only, so an image that is briefly
    absent (moved away, unreadable for one run) loses its saved split; when it comes back it
    is treated as new and goes to train -- a former holdout image leaks into training."""
    make_flat(tmp_path, {"MI": 10, "Normal": 10, "Covid_19": 10})
    first = assign_splits(scan(tmp_path))
    held = first[first["split"] == "holdout"].iloc[0]
    away = tmp_path.parent / f"{tmp_path.name}-away.png"
    shutil.move(held["path"], away)
    assign_splits(scan(tmp_path))  # a run while the image is absent
    shutil.move(away, held["path"])
    again = split_map(assign_splits(scan(tmp_path)))
    assert again[held["sha256"]] == "holdout"
    assert again == split_map(first)


def test_no_sha_in_two_splits(tmp_path):
    make_flat(tmp_path, {c: 8 for c in CLASSES})
    for c in CLASSES:  # in-class duplicates everywhere
        shutil.copyfile(tmp_path / c / "img_000.png", tmp_path / c / "dup_a.png")
        shutil.copyfile(tmp_path / c / "img_001.png", tmp_path / c / "dup_b.png")
    f = assign_splits(scan(tmp_path))
    assert f["sha256"].is_unique
    assert f.groupby("sha256")["split"].nunique().max() == 1
    sets = {s: set(f.loc[f["split"] == s, "sha256"]) for s in SPLITS}
    assert not (sets["train"] & sets["validation"])
    assert not (sets["train"] & sets["holdout"])
    assert not (sets["validation"] & sets["holdout"])


def test_split_independent_of_file_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_flat(a, {c: 12 for c in CLASSES})
    for src in a.rglob("*.png"):
        # other names in the reverse order, and another type of folder name for the class
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        dst = b / src.parent.name.lower().replace("_", " ") / f"{digest[::-1][:12]}_{src.stem[::-1]}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    fa, fb = assign_splits(scan(a)), assign_splits(scan(b))
    assert set(fa["path"].map(lambda p: Path(p).name)).isdisjoint(fb["path"].map(lambda p: Path(p).name))
    assert split_map(fa) == split_map(fb)


def test_class_with_too_few_images_is_an_error(tmp_path):
    make_flat(tmp_path, {"MI": 10, "Normal": 2})
    with pytest.raises(DatasetError, match="Normal"):
        assign_splits(scan(tmp_path))
    assert not (tmp_path / SPLIT_FILE).exists()  # nothing half-done is saved


def test_three_images_per_class_is_enough(tmp_path):
    make_flat(tmp_path, {"MI": 3, "Normal": 3})
    f = assign_splits(scan(tmp_path))
    for _, group in f.groupby("label"):
        assert sorted(group["split"]) == sorted(SPLITS)


@pytest.fixture
def read_only(tmp_path):
    """chmod 0o555 a folder for the test; restore it afterwards so tmp_path can be cleaned."""
    done = []

    def make(path: Path) -> Path:
        os.chmod(path, 0o555)
        done.append(path)
        return path

    yield make
    for path in done:
        os.chmod(path, 0o755)


def test_read_only_data_folder_uses_cache(tmp_path, monkeypatch, read_only):
    data, cache = tmp_path / "data", tmp_path / "cache"
    make_flat(data, {c: 6 for c in CLASSES})
    monkeypatch.setenv("SMARTECG_CACHE", str(cache))
    before = files_under(data)
    read_only(data)
    m = scan(data)
    f = assign_splits(m)
    assert files_under(data) == before  # nothing written into the data folder
    saved_files = list(cache.rglob("*.csv"))
    assert len(saved_files) == 1
    saved = pd.read_csv(saved_files[0], comment="#")
    assert dict(zip(saved["sha256"], saved["split"])) == split_map(f)
    # and it is found again on the next run
    assert split_map(assign_splits(scan(data), seed=99)) == split_map(f)
    assert len(list(cache.rglob("*.csv"))) == 1


def test_read_only_data_folder_reuses_existing_split_beside_data(tmp_path, monkeypatch, read_only):
    """Regression (was a bug): once the data folder is read-only, the split file already beside the data is ignored
    (the cache path is chosen before anything is read), so a fresh split is drawn: with another
    seed, or after images were added, the holdout moves."""
    data = tmp_path / "data"
    make_flat(data, {c: 12 for c in CLASSES})
    monkeypatch.setenv("SMARTECG_CACHE", str(tmp_path / "cache"))
    original = split_map(assign_splits(scan(data), seed=0))
    assert (data / SPLIT_FILE).is_file()
    read_only(data)
    again = split_map(assign_splits(scan(data), seed=1))
    assert again == original


def test_train_val_test_layout_keeps_given_splits(tmp_path):
    given = {}
    for folder, split in [("train", "train"), ("val", "validation"), ("test", "holdout")]:
        for c in ("MI", "Normal", "Covid_19"):
            for p in make_class(tmp_path / folder / c, 6 if folder == "train" else 2):
                given[hashlib.sha256(p.read_bytes()).hexdigest()] = (c, split)
    m = scan(tmp_path)
    assert m.layout == "split"
    assert set(m.frame["given_split"]) == {"train", "validation", "holdout"}
    f = assign_splits(m)
    assert len(f) == len(given)
    for sha, label, split in zip(f["sha256"], f["label"], f["split"]):
        assert (label, split) == given[sha]
    # rerun: unchanged
    assert split_map(assign_splits(scan(tmp_path), seed=5)) == split_map(f)


def test_train_test_layout_carves_validation_from_train(tmp_path):
    """Regression (was a bug): the docstring makes val/ (and test/) optional, but images under train/ get
    given_split "train", so _stratified_fill (which only fills rows without a split) never carves
    a validation set out of them and assign_splits always fails for a train/test layout."""
    for c in ("MI", "Normal"):
        make_class(tmp_path / "train" / c, 10)
        make_class(tmp_path / "test" / c, 3)
    m = scan(tmp_path)
    assert m.layout == "split"
    f = assign_splits(m)
    test_rows = f[f["given_split"] == "holdout"]
    train_rows = f[f["given_split"] == "train"]
    assert set(test_rows["split"]) == {"holdout"} and len(test_rows) == 6
    assert set(train_rows["split"]) == {"train", "validation"}  # never holdout
    for _, group in train_rows.groupby("label"):
        assert (group["split"] == "validation").sum() >= 1


def test_duplicate_of_test_image_in_train_is_dropped_from_train(tmp_path):
    for folder in ("train", "val", "test"):
        for c in ("MI", "Normal"):
            make_class(tmp_path / folder / c, 5 if folder == "train" else 2)
    held = tmp_path / "test" / "MI" / "img_000.png"
    leak = tmp_path / "train" / "MI" / "aaa_leaked_copy.png"  # sorts first: the path is no tiebreak
    shutil.copyfile(held, leak)
    m = scan(tmp_path)
    paths = set(map(Path, m.frame["path"]))
    assert held in paths and leak not in paths
    assert [(Path(d), Path(k)) for d, k in m.dropped_duplicates] == [(leak, held)]
    f = assign_splits(m)
    sha = hashlib.sha256(held.read_bytes()).hexdigest()
    assert f.loc[f["sha256"] == sha, "split"].tolist() == ["holdout"]


# ----------------------------------------------------------------------------- data_hash


def _copy_renamed(src_root: Path, dst_root: Path) -> None:
    for src in src_root.rglob("*.png"):
        dst = dst_root / src.parent.name / f"renamed_{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def test_data_hash_same_content_other_paths(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_flat(a, {"MI": 4, "Normal": 4})
    _copy_renamed(a, b)
    ha, hb = scan(a).data_hash(), scan(b).data_hash()
    assert ha == hb
    assert len(ha) == 16 and int(ha, 16) >= 0


def test_data_hash_changes_with_label(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_flat(a, {"MI": 4, "Normal": 4})
    _copy_renamed(a, b)
    moved = next((b / "MI").glob("*.png"))
    shutil.move(moved, b / "Normal" / f"moved_{moved.name}")
    ma, mb = scan(a), scan(b)
    assert mb.class_counts()["MI"] == 3
    assert sorted(ma.frame["sha256"]) == sorted(mb.frame["sha256"])  # only a label changed
    assert ma.data_hash() != mb.data_hash()


def test_data_hash_changes_with_image(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_flat(a, {"MI": 4, "Normal": 4})
    _copy_renamed(a, b)
    target = next((b / "MI").glob("*.png"))
    unique_image().save(target)  # same name, other pixels
    assert scan(a).data_hash() != scan(b).data_hash()


def test_a_new_class_gets_its_own_split_and_the_others_keep_theirs(tmp_path):
    make_flat(tmp_path, {"MI": 10, "Normal": 10})
    before = split_map(assign_splits(scan(tmp_path)))
    make_class(tmp_path / "Covid_19", 10)
    frame = assign_splits(scan(tmp_path), seed=3)
    after = split_map(frame)
    assert all(after[sha] == split for sha, split in before.items())
    covid = frame[frame["label"] == "Covid_19"]
    assert set(covid["split"]) == {"train", "validation", "holdout"}


def test_folders_beside_train_are_reported(tmp_path, caplog):
    make_flat(tmp_path / "train", {"MI": 3})
    make_class(tmp_path / "Normal", 3)
    with caplog.at_level(logging.WARNING, logger="features.dataset"):
        manifest = scan(tmp_path)
    assert manifest.layout == "split" and manifest.classes == ["MI"]
    assert "folders beside train/ are ignored: Normal" in caplog.text


# ----------------------------------------------------------------------------- re-scans


def test_a_rescan_reads_only_files_that_changed(tmp_path, monkeypatch):
    import features.dataset as dataset

    files = make_flat(tmp_path / "data", {"MI": 3, "Normal": 3})
    (tmp_path / "data" / "MI" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    first = scan(tmp_path / "data")
    reads = []
    real_read = dataset._read_one
    monkeypatch.setattr(dataset, "_read_one", lambda path, max_pixels: reads.append(path) or real_read(path, max_pixels))

    again = scan(tmp_path / "data")
    assert reads == []  # nothing changed: nothing decoded again
    pd.testing.assert_frame_equal(first.frame, again.frame)
    assert [s.reason for s in again.skipped] == [s.reason for s in first.skipped] and len(again.skipped) == 1

    changed = files["MI"][0]
    unique_image().save(changed)  # new content (and size or mtime) under the same name
    os.utime(changed, ns=(1, 1))
    third = scan(tmp_path / "data")
    assert reads == [changed]
    row = third.frame[third.frame["path"] == changed].iloc[0]
    assert row["sha256"] == hashlib.sha256(changed.read_bytes()).hexdigest()


def test_a_page_rewritten_with_its_size_and_mtime_kept_is_hashed_again(tmp_path):
    page = tmp_path / "data" / "MI" / "page.bmp"  # uncompressed: other pixels, same size
    page.parent.mkdir(parents=True)
    Image.new("RGB", (64, 48), "white").save(page)
    before = page.stat()
    first = scan(tmp_path / "data").frame["sha256"].iloc[0]
    Image.new("RGB", (64, 48), "black").save(page)  # as `cp -p` or `rsync -t` over it would
    os.utime(page, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (page.stat().st_size, page.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = scan(tmp_path / "data").frame["sha256"].iloc[0]
    assert again == hashlib.sha256(page.read_bytes()).hexdigest() != first
