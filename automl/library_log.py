"""Where library noise goes: one log file per ``smartecg`` command, never the command's output.

TensorFlow, absl, Keras, AutoKeras, keras-tuner and MLflow talk: C++ log lines written straight
to file descriptor 2 ("I0000 00:00 ... cuda drivers", "WARNING: All log messages before
absl::InitializeLog()"), Python loggers and ``warnings``. A command's stdout and stderr are for
its own answers, progress line and errors, so :func:`start` sends

- file descriptor 2 (what C/C++ code and child processes write) to the log file, while Python's
  ``sys.stderr`` keeps writing to the terminal through a copy of the original descriptor;
- the loggers in :data:`LIBRARY_LOGGERS` and Python ``warnings`` to the same file;
- an engine worker's output (already in its own file, see :mod:`automl.engines.runner`) into it
  when the worker ends (:func:`append_worker_output`).

With ``verbose`` nothing is taken off stderr: the library loggers and warnings reach it as well
as the file, and C++ lines stay on stderr as before. The file is
``$SMARTECG_CACHE/logs/<command>-<time>-<pid>.log``; an empty one is deleted when the command
ends, and only the newest :data:`KEEP` of each command are kept. A search also uploads it to its
run as ``logs/library.log``.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import automl._mlflow_env  # noqa: F401  (MLflow's environment, before anything imports it)
import features.tf_env  # noqa: F401  (TensorFlow's, likewise)
from features.cache import cache_root

__all__ = ["LIBRARY_LOGGERS", "LibraryLog", "append_worker_output", "current", "start"]

LIBRARY_LOGGERS = ("tensorflow", "flwr", "absl", "keras", "autokeras", "keras_tuner", "mlflow", "alembic",
                   "sqlalchemy", "py.warnings", "h5py", "matplotlib", "PIL", "numba", "distributed", "tf2onnx",
                   "skl2onnx", "onnx")
KEEP = 20  # log files kept per command

_current: LibraryLog | None = None


class LibraryLog:
    """The open log file of this command; :meth:`close` when the command ends."""

    def __init__(self, path: Path, verbose: bool) -> None:
        self.path = path
        self.verbose = verbose
        self._handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=False)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        self._propagate: dict[str, bool] = {}  # each library logger's own, given back on close

    def route(self) -> None:
        if not self.verbose and sys.stderr is sys.__stderr__:  # not when a caller already took stderr (tests)
            sys.stderr.flush()
            # The terminal stays Python's stderr; descriptor 2 itself, which C++ code and every child
            # process inherit, becomes the log file.
            sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding,
                                   errors="backslashreplace")
            with open(self.path, "ab") as log:
                os.dup2(log.fileno(), 2)
        logging.captureWarnings(True)
        self._propagate = {name: logging.getLogger(name).propagate for name in LIBRARY_LOGGERS}
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self._handler)
            logger.propagate = self.verbose  # the root logger's handler writes to the terminal
        # What MLflow would set itself (MLFLOW_CONFIGURE_LOGGING is off: its handler writes to the terminal):
        # no INFO lines about each schema migration, table or input example.
        level = os.environ.get("MLFLOW_LOGGING_LEVEL", "").upper()
        logging.getLogger("mlflow").setLevel(level if level in logging.getLevelNamesMapping() else logging.WARNING)
        for name in ("alembic", "sqlalchemy"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def has_content(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def close(self) -> None:
        """Detach the file's handler; delete the file when nothing was written to it. Descriptor 2
        stays on the file: C++ lines at the interpreter's exit are noise too."""
        global _current
        for name, propagate in self._propagate.items():
            logging.getLogger(name).removeHandler(self._handler)
            logging.getLogger(name).propagate = propagate
        self._handler.close()
        logging.captureWarnings(False)
        if _current is self:
            _current = None
        if not self.has_content():
            self.path.unlink(missing_ok=True)


def start(command: str, *, verbose: bool = False, folder: Path | None = None) -> LibraryLog | None:
    """Open this command's log file and route library output into it; None when no file can be
    written there (the command then runs as if verbose)."""
    global _current
    folder = folder or cache_root() / "logs"
    path = folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _prune(folder, command)
        log = LibraryLog(path, verbose)
    except OSError:
        return None
    log.route()
    _current = log
    return log


def current() -> LibraryLog | None:
    """The log file this command routes library output to, if any."""
    return _current


def append_worker_output(worker_log: Path, title: str) -> Path:
    """Copy what an engine worker wrote into this command's log; returns where it now is (the
    command's log, else the worker's own file)."""
    log = current()
    if log is None:
        return worker_log
    try:
        text = worker_log.read_bytes()
        with open(log.path, "ab") as out:
            out.write(f"----- {title}: {worker_log} -----\n".encode() + text)
            if text and not text.endswith(b"\n"):
                out.write(b"\n")
    except OSError:
        return worker_log
    return log.path


def _prune(folder: Path, command: str) -> None:
    """Keep the newest KEEP - 1 logs of ``command`` (its new one makes KEEP)."""
    def age(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # another command pruned it meanwhile
            return 0.0

    old = sorted(folder.glob(f"{command}-*.log"), key=age)
    for path in old[: max(0, len(old) - (KEEP - 1))]:
        path.unlink(missing_ok=True)
