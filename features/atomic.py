"""Write a file whole or not at all: readers, and a crash, see the old content or the new, never half.

Every writer follows one routine: write to a temporary file in the target's own folder (so the
final rename never crosses file systems), flush and fsync it, ``os.replace`` it onto the target,
fsync the folder (so the rename itself survives a power cut), and remove the temporary file when
anything fails before the rename.

* :func:`write_bytes` and :func:`write_text` for data in memory;
* :func:`replacing` for libraries that save to a path themselves (``keras.Model.save``,
  ``np.save``): it yields the temporary path to save to, and puts the result in place on success.

``durable=False`` skips the fsyncs (a few ms each on a disk) where a power cut may lose the file
as long as it never leaves half of one that passes for whole: a cache entry that checks itself, a
generated page made again on demand. The rename stays atomic for readers and for a killed process.

Temporary files are named ``.tmp-<random>-<name>``: hidden (a dataset scan or a glob for pages
skips them) and ending in the target's own name, so libraries that insist on a suffix (Keras'
``.keras``) accept them.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["TEMP_PREFIX", "replacing", "write_bytes", "write_text"]

TEMP_PREFIX = ".tmp-"


def write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path``'s content with ``data``, atomically."""
    with replacing(path, durable=durable) as tmp:
        _write_new(tmp, data)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", *, durable: bool = True) -> None:
    """Replace ``path``'s content with ``text``, atomically."""
    write_bytes(path, text.encode(encoding), durable=durable)


@contextlib.contextmanager
def replacing(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on a clean exit it replaces ``path``.

    Whatever is written there (a file, or a folder when ``path`` does not exist yet or is an empty
    folder) is renamed onto ``path``; a file is fsynced first (a folder's files are the library's
    to sync). When the block raises, the temporary path is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{path.name}")
    try:
        yield tmp
        if durable and tmp.is_file():
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    if durable:
        _fsync_folder(path.parent)


def _write_new(path: Path, data: bytes) -> None:
    # O_EXCL: the random name is ours alone. 0o666 less the umask, as open() would give (mkstemp's
    # 0o600 would make a shared file private).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with open(fd, "wb") as handle:
        handle.write(data)  # fsynced by replacing()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename is done all the same
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
