"""``trials.jsonl``: how a worker hands finished trials to its engine while it is still running.

The worker appends one JSON line per trial, each in a single ``O_APPEND`` write, so a worker
killed at any moment leaves only whole lines behind. The engine tails the file and logs each
new line as a :class:`~automl.engines.base.Trial` as soon as it appears.

A line holds a Trial's fields: ``description``, ``params``, ``score``, ``seconds`` (fit time),
``status``, ``error`` and ``extra`` (anything else worth keeping, e.g. per-epoch curves).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from automl.engines.base import Trial, TrialLog

__all__ = ["TrialTail", "append_line"]


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

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next look
        self.offset += end
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # cannot happen with single appends; never stop a search over it
            self.log(record)

    def log(self, record: dict) -> dict:
        """Log one record (also those the engine writes itself, e.g. a trial cut off by a kill)."""
        record["number"] = self.first_number + len(self.records)
        # TPOT's evaluation hook names the description "pipeline".
        description = record.get("description", record.get("pipeline", ""))
        trial = Trial(engine=self.engine, number=record["number"], description=description,
                      params=record.get("params", {}), score=record.get("score"), fit_seconds=record.get("seconds"),
                      status=record["status"], error=record.get("error", ""), extra=record.get("extra", {}))
        record["run_id"] = self.log_trial(trial)
        self.records.append(record)
        return record
