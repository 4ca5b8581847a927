"""``trials.jsonl``: how a worker hands finished trials to its engine while it is still running.

The worker appends one JSON line per trial, each in a single ``O_APPEND`` write, so a worker
killed at any moment leaves only whole lines behind. The engine tails the file and logs each
new line as a :class:`~automl.engines.base.Trial` as soon as it appears; it moves past a line only
once the line is logged, so a trial whose logging failed (a locked store) is logged at the next look.

A line holds a Trial's fields: ``description``, ``params``, ``score``, ``seconds`` (fit time),
``status``, ``error`` and ``extra`` (anything else worth keeping, e.g. per-epoch curves).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from automl.engines.base import Trial, TrialLog

__all__ = ["LOCK_RETRY_SECONDS", "TrialTail", "append_line", "is_locked"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Waits before trying a trial's log again while SQLite says "database is locked": another search,
# the MLflow UI or an Optuna worker held the write lock past the store's own busy timeout (MLflow
# sets 20 s on each of its SQLite sessions), or SQLite refused at once to avoid a deadlock. Few and
# short: each try may itself wait the store's timeout, and the next look (a second later) tries again.
LOCK_RETRY_SECONDS = (0.5, 2.0)


def append_line(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line in one write (whole or not at all for the reader)."""
    line = (json.dumps(record, default=float) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class TrialTail:
    """Reads the complete lines appended since the last look and logs each as a trial.

    ``records`` keeps every line read, with ``number`` (order of arrival, from ``first_number``:
    an engine's second call in one search goes on numbering) and ``run_id`` (what the log
    returned) added.
    """

    def __init__(self, path: Path, log_trial: TrialLog, engine: str, first_number: int = 0) -> None:
        self.path, self.log_trial, self.engine = path, log_trial, engine
        self.offset = 0
        self.first_number = first_number
        self.records: list[dict] = []

    def poll(self, *, last: bool = False) -> None:
        """Log the whole lines appended since the last look.

        The offset moves past a line only once its trial is logged, so a line whose logging failed
        is read again at the next look. A locked tracking store (SQLite) is waited for a few times;
        if it is still locked the rest waits for the next look, and on the ``last`` look it raises.
        """
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next look
        for line in chunk[:end].split(b"\n")[:-1]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None  # cannot happen with single appends; never stop a search over it
            if record is not None:
                try:
                    self.log(record)
                except Exception as exc:
                    if last or not is_locked(exc):
                        raise
                    log.warning("%s: trial %d not logged yet (%s); tried again at the next look",
                                self.engine, record["number"], _first_line(exc))
                    return
            self.offset += len(line) + 1

    def log(self, record: dict) -> dict:
        """Log one record (also those the engine writes itself, e.g. a trial cut off by a kill)."""
        record["number"] = self.first_number + len(self.records)
        # TPOT's evaluation hook names the description "pipeline".
        description = record.get("description", record.get("pipeline", ""))
        trial = Trial(engine=self.engine, number=record["number"], description=description,
                      params=record.get("params", {}), score=record.get("score"), fit_seconds=record.get("seconds"),
                      status=record["status"], error=record.get("error", ""), extra=record.get("extra", {}))
        record["run_id"] = _retry_when_locked(lambda: self.log_trial(trial))
        self.records.append(record)
        return record


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (as itself, or wrapped by SQLAlchemy or MLflow)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if "database is locked" in str(exc) or "database table is locked" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retry_when_locked(call: Callable[[], T]) -> T:
    """``call()``, tried again after each wait in :data:`LOCK_RETRY_SECONDS` while the store is locked."""
    for wait in LOCK_RETRY_SECONDS:
        try:
            return call()
        except Exception as exc:
            if not is_locked(exc):
                raise
            time.sleep(wait)
    return call()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
