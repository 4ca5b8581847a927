"""One run at a time: an exclusive lock on a file, released by the kernel when its holder dies.

The lock is ``flock`` on the file, so a run killed at any moment (``kill -9`` included) can never
leave a lock that blocks the next one. The file also says who holds it (host, pid, start, command)
for the message a second run shows; a holder that ended cleanly empties it, so a file that still
names a holder when its lock is free was left by a run that died, and the next run says so. The
file is readable by every user, so a password in a URL of the command is masked.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sys
import time
from pathlib import Path

__all__ = ["LockHeld", "RunLock"]

_URL_PASSWORD = re.compile(r"(://[^/@:\s]*):\S*@")  # to the last "@": a password may hold one


class LockHeld(RuntimeError):
    """Another process holds the lock."""


class RunLock:
    """``with RunLock(path) as lock:``; raises :class:`LockHeld` at once when another run holds it.

    ``lock.stale`` is the holder record a dead run left behind (None when there was none).
    """

    def __init__(self, path: str | os.PathLike, what: str = "run") -> None:
        self.path = Path(path)
        self.what = what
        self.stale: dict | None = None
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise LockHeld(f"another {self.what} is running ({_describe(holder)}); it holds {self.path}, so this "
                           "one exits without doing anything") from None
        self.stale = _holder(fd) or None
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": _without_passwords(" ".join(sys.argv))}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # a clean end: nothing stale for the next run to report
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def stale_message(self) -> str | None:
        """One line about the dead run whose lock this one took over, if there was one."""
        if not self.stale:
            return None
        return f"cleared a stale lock left by a {self.what} that died ({_describe(self.stale)})"


def _without_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` masked: the file is world-readable."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def _holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {"unreadable": True}


def _describe(holder: dict) -> str:
    if not holder or holder.get("unreadable"):
        return "holder unknown"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
