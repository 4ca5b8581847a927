"""Where an Optuna study lives: one URL names it, whatever the storage.

* ``sqlite:///path/optuna.db``: one machine (the default, beside MLflow's store);
* ``postgresql://user@host/db`` (or any SQLAlchemy URL): many machines, through Optuna's RDB
  storage (PostgreSQL needs the ``psycopg2`` driver, which SmartECG installs);
* ``journal:///path/optuna.log``: Optuna's journal file, for many processes on one machine or on a
  shared file system that supports file locks.

A SQLite storage waits up to :data:`SQLITE_BUSY_SECONDS` for another process's write lock (the
driver's default is 5 s). Trials a worker started carry its tag (:func:`worker_tag`), so that once
the worker is gone, those it could not end are marked FAILED (:func:`fail_cut_trials`) instead of
staying RUNNING in the study for ever.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["SQLITE_BUSY_SECONDS", "WORKER_ATTR", "fail_cut_trials", "open_storage", "shown_storage", "worker_tag"]

_JOURNAL = "journal://"
# How long a SQLite storage waits for another writer (a search logging to MLflow's store beside it,
# another worker's trial, a first-use migration) before "database is locked": long enough for any
# commit burst, short enough that a lock that never ends shows within a slice.
SQLITE_BUSY_SECONDS = 30.0
WORKER_ATTR = "smartecg.worker"  # user attribute: which worker started the trial
FAIL_REASON_ATTR = "fail_reason"


def open_storage(url: str):
    """What ``optuna.create_study(storage=...)`` takes for ``url``: an RDBStorage (SQLite with a busy
    timeout) or a JournalStorage, else the URL itself."""
    if url.startswith("sqlite:"):
        return _sqlite_storage(url)
    if not url.startswith(_JOURNAL):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = url[len(_JOURNAL):]
    if not path.startswith("/"):
        raise ValueError(f"a journal storage needs an absolute path, e.g. journal:///data/optuna.log; got {url!r}")
    return JournalStorage(JournalFileBackend(path))


def _sqlite_storage(url: str):
    from optuna.storages import RDBStorage

    if "timeout" in parse_qs(urlsplit(url).query):
        return RDBStorage(url)  # the URL's own ?timeout= stands
    return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_SECONDS}})


def worker_tag(workdir: str | os.PathLike) -> str:
    """The tag of the worker working in ``workdir`` on this machine (one worker per folder at a time)."""
    return f"{socket.gethostname()}:{Path(workdir).resolve()}"


def fail_cut_trials(url: str, study_name: str, tag: str, reason: str) -> list[int]:
    """Mark FAILED, with ``reason``, the trials still RUNNING that the worker tagged ``tag`` started.

    Call it only when that worker is gone: a trial it cut short (the slice ended, a kill, a crash)
    would otherwise stay RUNNING in the study. Returns the numbers of the trials failed.
    """
    import optuna
    from optuna.trial import TrialState

    storage = optuna.storages.get_storage(open_storage(url))
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []  # the worker never made the study
    failed = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(WORKER_ATTR) != tag:
            continue  # another worker's, maybe on another machine and still running
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                failed.append(trial.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # it ended meanwhile after all
    return failed


def shown_storage(url: str) -> str:
    """``url`` without its password, for messages and MLflow tags."""
    from urllib.parse import urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
