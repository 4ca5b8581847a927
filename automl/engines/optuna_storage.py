"""Where an Optuna study lives: one URL names it, whatever the storage.

* ``sqlite:///path/optuna.db``: one machine (the default, beside MLflow's store);
* ``postgresql://user@host/db`` (or any SQLAlchemy URL): many machines, through Optuna's RDB
  storage (PostgreSQL needs the ``psycopg2`` driver, which SmartECG installs);
* ``journal:///path/optuna.log``: Optuna's journal file, for many processes on one machine or on a
  shared file system that supports file locks.
"""
from __future__ import annotations

__all__ = ["open_storage", "shown_storage"]

_JOURNAL = "journal://"


def open_storage(url: str):
    """What ``optuna.create_study(storage=...)`` takes for ``url``: the URL itself, or a JournalStorage."""
    if not url.startswith(_JOURNAL):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = url[len(_JOURNAL):]
    if not path.startswith("/"):
        raise ValueError(f"a journal storage needs an absolute path, e.g. journal:///data/optuna.log; got {url!r}")
    return JournalStorage(JournalFileBackend(path))


def shown_storage(url: str) -> str:
    """``url`` without its password, for messages and MLflow tags."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
