"""The nightly re-search: the same search every night on the data as it grows, never two at once.

``smartecg nightly`` takes a lock (:mod:`automl.lock`; a second run exits at once, a dead run's
lock is taken over and reported), says which stores it uses (the first line of a cron log),
re-scans the data and compares it with the last night's scan (new, removed and changed images,
data hash), runs the search with the spec's budget (Optuna studies resume from their storage;
the saved split keeps the holdout fixed and sends new images to training), and writes a
one-screen summary: printed, kept in the state folder, and logged with the data changes to the
search's MLflow run.

The state folder (``$SMARTECG_CACHE/nightly/<experiment>`` by default) holds the lock, the last
scan and the last summary. The scan is replaced only after the search ends, so a run killed at
any moment leaves the next one comparing against the last finished night.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd

from automl.lock import RunLock

__all__ = ["DataChanges", "NightlyResult", "data_changes", "default_state_dir", "run_nightly", "scan_table"]

_SCAN_COLUMNS = ["path", "label", "sha256"]


@dataclass
class DataChanges:
    """How the data differs from the last finished night's (paths relative to the data folder)."""

    new: list[str]
    removed: list[str]
    changed: list[str]  # same file name, other content or class
    data_hash: str
    previous_hash: str | None
    n_images: int

    @property
    def first_night(self) -> bool:
        return self.previous_hash is None

    def line(self) -> str:
        if self.first_night:
            return f"data: {self.n_images} images (hash {self.data_hash}); first night, nothing to compare with"
        if not (self.new or self.removed or self.changed):
            return f"data: {self.n_images} images, unchanged since the last night (hash {self.data_hash})"
        return (f"data: {self.n_images} images; {len(self.new)} new, {len(self.removed)} removed, "
                f"{len(self.changed)} changed since the last night (hash {self.previous_hash} -> {self.data_hash})")

    def to_dict(self) -> dict:
        return {"data_hash": self.data_hash, "previous_hash": self.previous_hash, "n_images": self.n_images,
                "new": self.new, "removed": self.removed, "changed": self.changed}


@dataclass
class NightlyResult:
    search: object  # automl.controller.SearchResult
    changes: DataChanges
    trials_before: int | None  # in the Optuna study, when the spec runs Optuna
    trials_after: int | None
    summary: str


def default_state_dir(experiment: str) -> Path:
    from features.cache import cache_root

    return cache_root() / "nightly" / experiment


def data_changes(scanned: pd.DataFrame, previous: pd.DataFrame | None, data_hash: str,
                 previous_hash: str | None) -> DataChanges:
    """Compare tonight's scan with the previous night's (columns path, label, sha256; paths relative
    to the data folder, as :func:`scan_table` gives them)."""
    now = scanned.set_index("path")
    if previous is None:
        return DataChanges([], [], [], data_hash, None, len(now))
    before = previous.set_index("path")
    new = sorted(set(now.index) - set(before.index))
    removed = sorted(set(before.index) - set(now.index))
    both = sorted(set(now.index) & set(before.index))
    changed = [p for p in both if (now.at[p, "sha256"], now.at[p, "label"]) != (before.at[p, "sha256"],
                                                                                 before.at[p, "label"])]
    return DataChanges(new, removed, changed, data_hash, previous_hash, len(now))


def run_nightly(spec, budget_seconds: float, *, data: str | Path, seed: int = 0, tracking_uri: str | None = None,
                state_dir: str | Path | None = None, progress: bool = False, stream: TextIO | None = None,
                engine_factory=None) -> NightlyResult:
    """One night: lock, scan and compare, search, summary. Raises :class:`~automl.lock.LockHeld`
    at once when another nightly run of this experiment is going on."""
    from automl.controller import make_engine, run_search
    from features.dataset import scan

    state = Path(state_dir) if state_dir is not None else default_state_dir(spec.name)
    root = Path(data)
    with RunLock(state / "nightly.lock", "nightly run") as lock:
        optuna = _optuna_engine(spec)
        # First, so that a cron log says where a run went even when it fails.
        print(_stores_line(spec, root, tracking_uri, optuna, state), file=stream or sys.stdout, flush=True)
        notes = [lock.stale_message()] if lock.stale else []
        manifest = scan(root, progress=False)
        scanned = scan_table(manifest.frame, root)
        previous, previous_hash = _read_scan(state)
        changes = data_changes(scanned, previous, manifest.data_hash(), previous_hash)
        trials_before = optuna.trial_count(spec.name) if optuna else None
        started = time.strftime("%Y-%m-%d %H:%M")
        result = run_search(spec, budget_seconds, data=root, seed=seed, tracking_uri=tracking_uri, progress=progress,
                            stream=stream, engine_factory=engine_factory or make_engine, manifest=manifest,
                            run_name=f"nightly-{started.replace(' ', '-')}",
                            run_tags={"smartecg.nightly": "true",
                                      "smartecg.previous_data_hash": previous_hash or "none"},
                            documents={"data_changes.json": changes.to_dict()})
        trials_after = optuna.trial_count(spec.name) if optuna else None
        summary = _summary(started, spec, changes, result, trials_before, trials_after, notes)
        _log_summary(result, summary)
        (state / "last_summary.txt").write_text(summary + "\n")
        _write_scan(state, scanned, changes.data_hash)  # last: a killed run changes nothing here
    return NightlyResult(result, changes, trials_before, trials_after, summary)


def _optuna_engine(spec):
    from automl.engines.optuna_engine import OptunaEngine

    try:
        return OptunaEngine(**spec.engine("optuna").options)
    except KeyError:
        return None


def _stores_line(spec, root: Path, tracking_uri: str | None, optuna, state: Path) -> str:
    """Which data, MLflow store, Optuna storage and state folder the run uses (passwords masked)."""
    from automl.engines.optuna_storage import shown_storage
    from automl.tracking import resolve_tracking_uri

    stores = [f"data {root}", f"MLflow {shown_storage(resolve_tracking_uri(tracking_uri))}"]
    if optuna is not None:
        stores.append(f"Optuna {shown_storage(optuna.storage_url())}")
    return f"nightly run of {spec.name}: " + ", ".join([*stores, f"state {state}"])


def _summary(started: str, spec, changes: DataChanges, result, trials_before, trials_after, notes) -> str:
    from automl.summary import search_summary

    lines = [f"SmartECG nightly {started}, experiment {spec.name}", *notes, changes.line()]
    if trials_before is not None:
        lines.append(f"optuna study: {trials_before} -> {trials_after} trials (resumed; it keeps every night's)")
    lines.append(search_summary(result))
    return "\n".join(lines)


def _log_summary(result, summary: str) -> None:
    from automl.tracking import use_store

    try:
        use_store(result.tracking_uri).log_text(result.run_id, summary, "nightly_summary.txt")
    except Exception:  # the summary is printed and kept in the state folder anyway
        pass


def scan_table(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """A manifest frame's path, label and sha256, paths relative to ``root`` (what nights compare)."""
    out = frame[_SCAN_COLUMNS].copy()
    out["path"] = [os.path.relpath(p, root) for p in out["path"]]
    return out


def _read_scan(state: Path) -> tuple[pd.DataFrame | None, str | None]:
    try:
        with open(state / "last_scan.csv") as handle:
            first = handle.readline()  # "# data_hash ...", then the table
            frame = pd.read_csv(handle, dtype=str)
    except (OSError, ValueError):
        return None, None
    return frame[_SCAN_COLUMNS], first.removeprefix("# data_hash ").strip() or None


def _write_scan(state: Path, scanned: pd.DataFrame, data_hash: str) -> None:
    from features.atomic import write_text

    write_text(state / "last_scan.csv", f"# data_hash {data_hash}\n" + scanned.to_csv(index=False))
