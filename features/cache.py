"""Content-addressed feature cache on disk: key = image sha256 + feature-config hash.

Entries are written to a temporary file in the same folder and renamed into place, so a reader
(or a second process writing the same key) never sees half an entry. Each entry carries a digest
of its payload; an entry that fails the check is deleted and reported as a miss, never trusted.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from features.atomic import TEMP_PREFIX, write_bytes

__all__ = ["CacheStats", "FeatureCache", "cache_root", "config_hash", "default_cache_dir"]

log = logging.getLogger(__name__)

_MAGIC = b"SECG1"
_DIGEST_SIZE = 16
_TMP_PREFIX = TEMP_PREFIX  # what features.atomic names its temporary files
# A temp file this old belongs to a writer that died; a younger one may still be renamed into place.
_STALE_TMP_SECONDS = 3600


def cache_root() -> Path:
    """Folder for everything smartecg caches: ``$SMARTECG_CACHE``, else ``~/.cache/smartecg``.

    The one place the variable is read; an empty value counts as unset.
    """
    return Path(os.environ.get("SMARTECG_CACHE") or Path.home() / ".cache" / "smartecg")


def default_cache_dir() -> Path:
    return cache_root() / "features"


class CacheStats(NamedTuple):
    entries: int
    size_bytes: int


def config_hash(config: dict) -> str:
    """A short stable hash of a JSON-able feature configuration (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Arrays keyed by (image sha256, config hash), bounded to ``max_bytes`` on disk."""

    def __init__(self, root: str | os.PathLike | None = None, *, max_bytes: int = 2 * 1024**3):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.max_bytes = max_bytes

    def path_for(self, image_sha256: str, config_key: str) -> Path:
        return self.root / config_key / image_sha256[:2] / f"{image_sha256}.secg"

    def get(self, image_sha256: str, config_key: str) -> np.ndarray | None:
        path = self.path_for(image_sha256, config_key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        array = _decode(blob)
        if array is None:
            log.warning("feature cache: corrupted entry %s removed; it will be recomputed", path)
            path.unlink(missing_ok=True)
        return array

    def put(self, image_sha256: str, config_key: str, array: np.ndarray) -> None:
        path = self.path_for(image_sha256, config_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Readers see the old entry or the new one, never half; no fsync: an entry checks itself.
        write_bytes(path, _encode(array), durable=False)

    def size_bytes(self) -> int:
        return self.stats().size_bytes

    def stats(self) -> CacheStats:
        """Number of entries and their total size; a missing folder is an empty cache."""
        found = [st for st in map(_stat_or_none, self._entries()) if st is not None]
        return CacheStats(len(found), sum(st.st_size for st in found))

    def prune(self) -> int:
        """Delete least recently written entries until the cache fits ``max_bytes``; return how many."""
        found = [(path, st) for path in self._entries() if (st := _stat_or_none(path)) is not None]
        total = sum(st.st_size for _, st in found)
        removed = 0
        for path, st in sorted(found, key=lambda item: item[1].st_mtime):
            if total <= self.max_bytes:
                break
            total -= st.st_size
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def clear(self) -> CacheStats:
        """Delete every entry and the temp files of dead writers; return the entries and bytes freed.

        Only files laid out as the cache writes them are touched, so a wrong ``root`` loses nothing else.
        """
        cutoff = time.time() - _STALE_TMP_SECONDS
        entries = freed = 0
        for path in list(self._cache_files()):
            st = _stat_or_none(path)
            is_temp = path.name.startswith(_TMP_PREFIX)
            if st is None or (is_temp and st.st_mtime >= cutoff):
                continue  # gone meanwhile, or a write still in progress
            path.unlink(missing_ok=True)
            entries += not is_temp
            freed += st.st_size
        return CacheStats(entries, freed)

    def _entries(self):
        # Temp files match the glob too (pathlib's * matches dot-files) but are not entries yet.
        return (p for p in self._cache_files() if not p.name.startswith(_TMP_PREFIX))

    def _cache_files(self):
        return self.root.glob("*/*/*.secg") if self.root.is_dir() else iter(())


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:  # another process pruned, cleared or renamed it meanwhile
        return None


def _encode(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    payload = buffer.getvalue()
    return _MAGIC + hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() + payload


def _decode(blob: bytes) -> np.ndarray | None:
    head = len(_MAGIC) + _DIGEST_SIZE
    if len(blob) < head or not blob.startswith(_MAGIC):
        return None
    digest, payload = blob[len(_MAGIC):head], blob[head:]
    if hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() != digest:
        return None
    try:
        return np.load(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, OSError):
        return None
