"""Dataset folders -> a validated manifest -> a stratified, leakage-free, persistent split.

Two layouts are read:

* flat: ``ROOT/<Class>/*.jpg``
* split: ``ROOT/train/<Class>/*.jpg`` with optional ``ROOT/val/`` and ``ROOT/test/`` beside it
  (their images keep the split they were given).

Class folders are matched to the five classes ignoring case, spaces and punctuation, and the
public dataset's original folder names are accepted. A bad file never stops a scan: it is listed
in :attr:`Manifest.skipped` with the reason, and the scan goes on. Left out too, each with its line:
hidden files and folders (``.DS_Store``, ``.thumbs/``), macOS archive leftovers (``__MACOSX/``),
names that are not UTF-8 (shown with ``\\xNN`` escapes), and files larger than any page could be
(:data:`MAX_PAGE_BYTES`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features._progress import progress_disabled
from features.atomic import write_text
from features.cache import cache_root
from features.imageio import DEFAULT_MAX_PIXELS, SUPPORTED_SUFFIXES, ImageReadError, probe_bytes, read_file

__all__ = [
    "CLASSES",
    "SPLITS",
    "DatasetError",
    "MAX_PAGE_BYTES",
    "Manifest",
    "SkippedFile",
    "assign_splits",
    "canonical_class",
    "labelled_content_hash",
    "scan",
]

log = logging.getLogger(__name__)

CLASSES = ("Abnormal_HeartBeat", "Covid_19", "MI", "MI_History", "Normal")
SPLITS = ("train", "validation", "holdout")

# Keys are folder names lower-cased with everything but letters and digits removed, after any
# "(240x12=2880)"-style count in brackets is dropped.
_ALIASES = {
    "abnormalheartbeat": "Abnormal_HeartBeat",
    "abnormal": "Abnormal_HeartBeat",
    "ecgimagesofpatientthathaveabnormalheartbeat": "Abnormal_HeartBeat",
    "covid19": "Covid_19",
    "covid": "Covid_19",
    "ecgimagesofcovid19patients": "Covid_19",
    "mi": "MI",
    "myocardialinfarction": "MI",
    "ecgimagesofmyocardialinfarctionpatients": "MI",
    "mihistory": "MI_History",
    "historyofmi": "MI_History",
    "ecgimagesofpatientthathavehistoryofmi": "MI_History",
    "normal": "Normal",
    "normalperson": "Normal",
    "normalpersonecgimages": "Normal",
}
_SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "val": "validation", "valid": "validation", "validation": "validation",
    "test": "holdout", "holdout": "holdout",
}
# When the same bytes sit in two given splits of one class, the copy in the most held-out split
# is kept, so the evaluation set never loses an image to training.
_SPLIT_PRIORITY = {"holdout": 0, "validation": 1, "train": 2, "": 3}
SPLIT_FILE = "smartecg_split.csv"
# A scanned 12-lead page is a few MB (JPEG or PNG); even uncompressed, an A4 page at 300 dpi in
# colour is 26 MB and at 600 dpi in grey 35 MB. A bigger file is something else (a video, an
# archive, a multi-page export), and reading it whole would hold that much memory per scan thread.
MAX_PAGE_BYTES = 50 * 1024 * 1024
# Folders that never hold pages: what macOS's archiver adds beside the files it zips.
_JUNK_FOLDERS = {"__MACOSX"}
_SPLIT_HEADER = "# smartecg split v1"


class DatasetError(ValueError):
    """The dataset as a whole cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class Manifest:
    """The usable images of a dataset, one row each, plus what was left out and why.

    ``frame`` columns: path, label, sha256, width, height, bytes, mode, format, given_split
    (the split a ``train/val/test`` layout put it in, else empty).
    """

    root: Path
    layout: str
    frame: pd.DataFrame
    skipped: list[SkippedFile] = field(default_factory=list)
    dropped_duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (dropped, kept)
    warnings: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """The classes with at least one image, in the canonical order."""
        present = set(self.frame["label"])
        return [c for c in CLASSES if c in present]

    def class_counts(self) -> dict[str, int]:
        counts = self.frame["label"].value_counts()
        return {c: int(counts.get(c, 0)) for c in CLASSES}

    def data_hash(self) -> str:
        """A short hash of the labelled content: equal for equal data, whatever the paths."""
        return labelled_content_hash(self.frame["sha256"], self.frame["label"])


def labelled_content_hash(content_hashes, labels) -> str:
    """A short hash of (content hash, label) pairs, whatever their order or the files' paths."""
    digest = hashlib.sha256()
    for sha, label in sorted(zip(content_hashes, labels)):
        digest.update(f"{sha}:{label}\n".encode())
    return digest.hexdigest()[:16]


def canonical_class(folder_name: str) -> str | None:
    """Map a class folder name to one of :data:`CLASSES`, or None when it is not one."""
    key = re.sub(r"\([^)]*\)", "", folder_name)
    key = re.sub(r"[^a-z0-9]", "", key.lower())
    return _ALIASES.get(key)


def scan(
    root: str | os.PathLike,
    *,
    n_jobs: int = 4,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = MAX_PAGE_BYTES,
    progress: bool | None = None,
) -> Manifest:
    """Read every image under ``root`` once: hash, check it decodes, note its geometry.

    Files above ``max_bytes`` are skipped unread.

    Raises:
        DatasetError: ``root`` is missing, a folder is not a known class, no image is usable,
            or the same bytes are filed under two classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; point --data at a folder of class folders")
    skipped: list[SkippedFile] = []
    layout, class_dirs = _find_class_dirs(root, skipped)
    warnings: list[str] = []
    candidates: list[tuple[Path, str, str]] = []
    for class_dir, label, given_split in class_dirs:
        files = _page_files(class_dir, skipped)
        images = [p for p in files if p.suffix.lower() in SUPPORTED_SUFFIXES]
        skipped += [
            SkippedFile(p, f"not an image file type ({p.suffix or 'no extension'}); "
                           "move it out of the class folder")
            for p in files if p.suffix.lower() not in SUPPORTED_SUFFIXES
        ]
        if not images:
            warnings.append(f"{class_dir}: empty class folder ({label}), ignored; add images or remove it")
        candidates += [(p, label, given_split) for p in images]

    rows: list[dict] = []
    remembered = _ScanMemory(root, max_pixels, max_bytes)
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        results = pool.map(lambda c: remembered.read(c[0]), candidates)
        for (path, label, given_split), result in tqdm(
            zip(candidates, results), total=len(candidates), desc="scan", unit="img",
            disable=progress_disabled(progress, len(candidates), threshold=200),
        ):
            if isinstance(result, SkippedFile):
                skipped.append(result)
            else:
                rows.append({"path": path, "label": label, **result, "given_split": given_split})

    remembered.save()
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    frame = pd.DataFrame(rows, columns=["path", "label", "sha256", "width", "height", "bytes",
                                        "mode", "format", "given_split"])
    frame, dropped = _resolve_duplicates(frame)
    for kept_out, kept in dropped:
        log.warning("dropped %s: same bytes as %s (exact duplicate in one class)", kept_out, kept)
    for w in warnings:
        log.warning(w)
    if frame.empty:
        raise DatasetError(
            f"{root}: no usable image found ({len(skipped)} skipped); expected class folders "
            f"such as {', '.join(CLASSES)} holding JPEG, PNG, BMP or TIFF pages"
        )
    return Manifest(root=root, layout=layout, frame=frame.reset_index(drop=True), skipped=skipped,
                    dropped_duplicates=dropped, warnings=warnings)


def assign_splits(
    manifest: Manifest,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    split_file: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Return the manifest frame with a ``split`` column (train / validation / holdout).

    The split is stratified by class and saved as CSV beside the data (``smartecg_split.csv``;
    in a per-user cache when the data folder is read-only), keyed by content hash. A rerun
    reuses it: images already assigned keep their split, even after being away for a run; new
    images of known classes go to ``train``, so the holdout never changes under a model; a class
    the saved split has never seen gets a stratified split of its own. Images that a
    ``val/`` or ``test/`` folder placed keep their place; ``train/`` images are split further
    when a validation or holdout set is missing. Exact duplicates were merged by :func:`scan`,
    so none can straddle two splits.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    frame = manifest.frame.copy()
    read_path, write_path = _split_paths(manifest.root, split_file)
    saved, header = _read_split_file(read_path) if read_path else (None, None)

    given = frame["given_split"]
    frame["split"] = given.where(given.isin(["validation", "holdout"]), None)
    if saved is not None:
        known = frame["split"].isna() & frame["sha256"].isin(saved.index)
        frame.loc[known, "split"] = frame.loc[known, "sha256"].map(saved["split"])
        new = frame["split"].isna() & frame["label"].isin(set(saved["label"]))
        if new.any():
            log.info("split: %d new image(s) go to train; saved split in %s kept", int(new.sum()), read_path)
        frame.loc[new, "split"] = "train"
    _stratified_fill(frame, fractions, seed)

    _check_every_split_has_every_class(frame)
    _write_split_file(write_path, frame, saved, header or _header(seed, fractions))
    frame.attrs["split_file"] = str(write_path)
    return frame


def _stratified_fill(frame: pd.DataFrame, fractions: tuple[float, float, float], seed: int) -> None:
    """Assign the images without a split, class by class, carving out what each class lacks."""
    for label, group in frame[frame["split"].isna()].groupby("label", sort=True):
        assigned = set(frame.loc[frame["label"] == label, "split"].dropna())
        # Sorting by content hash first makes the split independent of file names and order.
        order = group.sort_values("sha256").index.to_numpy()
        order = order[np.random.default_rng([seed, CLASSES.index(label)]).permutation(len(order))]
        wanted = [s for s in ("validation", "holdout") if s not in assigned]
        n_out = {s: max(1, round(len(order) * fractions[SPLITS.index(s)])) for s in wanted}
        if len(order) - sum(n_out.values()) < 1:
            raise DatasetError(
                f"class {label} has {len(order)} image(s) to split; a train/validation/holdout "
                f"split needs at least {len(wanted) + 1} per class: add images or remove the class folder"
            )
        start = 0
        for split in wanted:
            frame.loc[order[start:start + n_out[split]], "split"] = split
            start += n_out[split]
        frame.loc[order[start:], "split"] = "train"


def _check_every_split_has_every_class(frame: pd.DataFrame) -> None:
    for label, group in frame.groupby("label", sort=True):
        missing = sorted(set(SPLITS) - set(group["split"]))
        if missing:
            raise DatasetError(
                f"class {label} has no image in the {', '.join(missing)} split "
                f"({len(group)} image(s) in all): add images, or delete the saved split file to re-split"
            )


def _split_paths(root: Path, split_file) -> tuple[Path | None, Path]:
    """Where to read a saved split from, and where to write it."""
    if split_file:
        path = Path(split_file)
        return (path if path.exists() else None), path
    beside = root / SPLIT_FILE
    if _writable(root) and (not beside.exists() or _writable(beside)):
        write = beside
    else:
        key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        write = cache_root() / "splits" / f"{root.name}-{key}.csv"
    # The cache copy, once made, carries everything the file beside the data had, and more.
    read = write if write.exists() else (beside if beside.exists() else None)
    return read, write


def _writable(path: Path) -> bool:
    # The mode bits count too: a folder marked read-only stays untouched even when run as root.
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & stat.S_IWUSR)


def _header(seed: int, fractions) -> str:
    return f"{_SPLIT_HEADER} seed={seed} fractions={','.join(f'{f:g}' for f in fractions)}"


def _read_split_file(path: Path) -> tuple[pd.DataFrame, str]:
    try:
        with open(path) as fh:
            header = fh.readline().strip()
        saved = pd.read_csv(path, comment="#", dtype=str)
        if not {"sha256", "label", "split"} <= set(saved.columns) or not saved["split"].isin(SPLITS).all():
            raise ValueError("unexpected columns or split names")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{path}: unreadable split file ({exc}); delete it to re-split") from None
    if not header.startswith(_SPLIT_HEADER):
        header = ""
    return saved.drop_duplicates("sha256").set_index("sha256"), header


def _write_split_file(path: Path, frame: pd.DataFrame, saved: pd.DataFrame | None, header: str) -> None:
    out = frame[["sha256", "label", "split"]].assign(
        path=[_relative(p, path.parent) for p in frame["path"]]
    )
    if saved is not None:
        # Images absent this time keep their row, so they come back to the split they had.
        away = saved[~saved.index.isin(frame["sha256"])].reset_index()
        out = pd.concat([out, away[[c for c in out.columns if c in away.columns]]], ignore_index=True)
    out = out.sort_values(["split", "label", "sha256"])
    path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: a crash never leaves a half-written split that would shift the holdout.
    write_text(path, header + "\n" + out.to_csv(index=False))


def _relative(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # different drives on Windows
        return str(path)


def _printable(path: str | os.PathLike) -> str:
    """``path`` as text that can be printed: bytes of a name that are not UTF-8 shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _left_out(path: Path, is_dir: bool) -> str | None:
    """Why a file or folder met in a scan is not looked at, or None when it is."""
    kind = "folder" if is_dir else "file"
    if is_dir and path.name in _JUNK_FOLDERS:
        return "macOS archive leftovers (resource forks, not pages); delete the folder"
    if path.name.startswith("."):
        return f"hidden {kind} (name starts with '.'), not read"
    if _printable(path.name) != path.name:
        return (f"{kind} name is not UTF-8 (shown with \\x escapes); rename it, e.g. "
                "`convmv -f latin1 -t utf8 --notest -r <folder>`")
    return None


def _subfolders(parent: Path, skipped: list[SkippedFile]) -> list[Path]:
    """The folders in ``parent`` a scan looks into; the others go to ``skipped`` with their reason."""
    kept = []
    for folder in sorted(p for p in parent.iterdir() if p.is_dir()):
        reason = _left_out(folder, is_dir=True)
        if reason is None:
            kept.append(folder)
        else:
            skipped.append(SkippedFile(_shown(folder), reason))
    return kept


def _page_files(class_dir: Path, skipped: list[SkippedFile]) -> list[Path]:
    """Every file under ``class_dir`` that is not left out (hidden, junk, not UTF-8), in order."""
    files = []
    for top, folders, names in os.walk(class_dir):
        top_path = Path(top)
        for name in list(folders):
            reason = _left_out(top_path / name, is_dir=True)
            if reason is not None:
                folders.remove(name)  # not walked into
                skipped.append(SkippedFile(_shown(top_path / name), reason))
        for name in names:
            path = top_path / name
            if not path.is_file():
                continue  # a broken link, a socket
            reason = _left_out(path, is_dir=False)
            if reason is None:
                files.append(path)
            else:
                skipped.append(SkippedFile(_shown(path), reason))
    return sorted(files)


def _shown(path: Path) -> Path:
    # Skipped paths are printed and written to reports and MLflow, which take text only.
    return Path(_printable(path))


def _find_class_dirs(root: Path, skipped: list[SkippedFile]) -> tuple[str, list[tuple[Path, str, str]]]:
    subdirs = _subfolders(root, skipped)
    split_dirs = [(d, _SPLIT_FOLDERS[d.name.lower()]) for d in subdirs if d.name.lower() in _SPLIT_FOLDERS]
    if any(split == "train" for _, split in split_dirs):
        layout, parents = "split", split_dirs
        stray = [d.name for d in subdirs if d.name.lower() not in _SPLIT_FOLDERS]
        if stray:
            log.warning("%s: folders beside train/ are ignored: %s; move them into train/, val/ or test/",
                        root, ", ".join(stray))
    else:
        layout, parents = "flat", [(root, "")]
    found = []
    for parent, given_split in parents:
        for d in (_subfolders(parent, skipped) if parent != root else subdirs):
            label = canonical_class(d.name)
            if label is None:
                raise DatasetError(
                    f"{d}: unknown class folder {d.name!r}; expected one of {', '.join(CLASSES)} "
                    "(or the public dataset's folder names): rename or remove it"
                )
            found.append((d, label, given_split))
    if not found:
        raise DatasetError(
            f"{root}: no class folders found; expected {root}/<Class>/ or {root}/train/<Class>/ "
            f"with <Class> one of {', '.join(CLASSES)}"
        )
    return layout, found


class _ScanMemory:
    """What the last scan of this folder found per file, reused while the file is provably unchanged.

    Checking that a page decodes costs milliseconds; a nightly re-scan of thousands of unchanged
    pages should not pay it again. Kept in ``$SMARTECG_CACHE/scans``; a missing or unreadable
    memory just means every file is read.

    Size and mtime alone do not prove a file unchanged: ``cp -p``, ``rsync -t`` and ``touch -d``
    set the mtime they like. The inode's change time (ctime) cannot be set that way: the kernel
    moves it to "now" on every write, rename or utime, and a file replaced by a copy has a new
    inode as well. So a result is reused only while size, mtime, ctime and inode all hold (as git
    decides whether a file changed). Re-hashing a sample of each file instead would still read it,
    and miss a change outside the sample.
    """

    VERSION = 2

    def __init__(self, root: Path, max_pixels: int, max_bytes: int = MAX_PAGE_BYTES) -> None:
        key = hashlib.sha256(f"{root.resolve()}|{max_pixels}|{self.VERSION}".encode()).hexdigest()[:16]
        self.path = cache_root() / "scans" / f"{root.name}-{key}.json"
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        try:
            self.known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self.seen: dict[str, dict] = {}

    def read(self, path: Path) -> dict | SkippedFile:
        try:
            st = path.stat()
        except OSError:
            return _read_one(path, self.max_pixels)  # says what is wrong with it
        if st.st_size > self.max_bytes:
            return SkippedFile(path, f"{st.st_size / 2**20:.0f} MB, larger than any ECG page (limit "
                                     f"{self.max_bytes / 2**20:.0f} MB); move it out, or save the page as JPEG or PNG")
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entry = self.known.get(str(path))
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            result = entry["result"]
        else:
            found = _read_one(path, self.max_pixels)
            result = {"skipped": found.reason} if isinstance(found, SkippedFile) else found
        self.seen[str(path)] = {"stamp": stamp, "result": result}
        return SkippedFile(path, result["skipped"]) if "skipped" in result else dict(result)

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(self.seen))
        except OSError as exc:  # a read-only cache only makes the next scan slower
            log.debug("scan memory not saved to %s: %s", self.path, exc)


def _read_one(path: Path, max_pixels: int) -> dict | SkippedFile:
    try:
        data = read_file(path)
        info = probe_bytes(data, str(path), max_pixels=max_pixels)
    except ImageReadError as exc:
        return SkippedFile(path, f"{exc.reason}; {exc.hint}")
    return {"sha256": hashlib.sha256(data).hexdigest(), "width": info.width, "height": info.height,
            "bytes": len(data), "mode": info.mode, "format": info.format}


def _resolve_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[Path, Path]]]:
    dropped: list[tuple[Path, Path]] = []
    keep = np.ones(len(frame), dtype=bool)
    for sha, group in frame[frame.duplicated("sha256", keep=False)].groupby("sha256"):
        labels = sorted(set(group["label"]))
        if len(labels) > 1:
            paths = " and ".join(str(p) for p in group["path"])
            raise DatasetError(
                f"the same image is filed under {' and '.join(labels)}: {paths}; "
                "keep it in the one right class folder"
            )
        ranked = group.assign(_rank=group["given_split"].map(_SPLIT_PRIORITY)).sort_values(["_rank", "path"])
        kept_path = ranked["path"].iloc[0]
        for idx in ranked.index[1:]:
            keep[frame.index.get_loc(idx)] = False
            dropped.append((frame.at[idx, "path"], kept_path))
    return frame[keep], dropped

