"""Run feature sets over many page images: each file read once, rows cached by content, in parallel.

A row is cached per feature set, under ``config_hash({"sets": {name: version}, "size": size})``
(the size that set's page was normalised at; plus ``"grid": "kept"`` when pages are normalised
with ``suppress_grid=False``) and the sha256 of the file's bytes (the same hash as the dataset
manifest), so a search that tries another combination of sets reuses every set it
has already computed, and a page is only decoded and normalised when one of its sets is missing,
once per distinct size those sets read. Arrays have no file behind them and are never cached.

An unreadable input raises :class:`~features.imageio.ImageReadError` naming it, from the worker
that met it, in input order; nothing is skipped silently.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from features._heap import keep_heap_top
from features._progress import progress_disabled
from features.cache import FeatureCache, config_hash
from features.imageio import ImageReadError, read_file
from features.pages import NormalisedPage, normalise_page
from features.source_traces import SOURCE_RESOLUTION, SourcePage, read_source_page

__all__ = ["as_sources", "extract_features", "normalised_pages", "read_page", "rows_from_pages"]

log = logging.getLogger(__name__)

Source = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray
# name -> (version, function of a normalised page, the page size it reads or None for the
# default); features.handcrafted.FeatureSet is one. A set of size SOURCE_RESOLUTION reads the
# page at the source's resolution: its function takes a features.source_traces.SourcePage.
SetSpec = tuple[int, Callable[[NormalisedPage], np.ndarray], tuple[int, int] | None]
SetSpecs = Mapping[str, SetSpec]


def as_sources(X: Any) -> list[Source]:
    """The images in ``X`` (a list, array or Series of paths, bytes or arrays) as a list.

    A one-column DataFrame or (n, 1) array is taken as its column; a 3-D or 4-D numeric array
    as a stack of images. A single path or a single 2-D image is refused rather than guessed at.
    """
    if hasattr(X, "columns"):  # DataFrame: one column of images
        if len(X.columns) != 1:
            raise TypeError(f"expected one column of images, got {len(X.columns)} columns")
        X = X.iloc[:, 0]
    if isinstance(X, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise TypeError(f"expected a sequence of images, got a single {type(X).__name__}; wrap it in a list")
    if isinstance(X, np.ndarray):
        X = _array_items(X)
    sources = list(X)
    for i, item in enumerate(sources):
        if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray)):
            raise TypeError(f"X[{i}] is a {type(item).__name__}; expected a path, raw bytes or an image array")
    return sources


def _array_items(X: np.ndarray):
    if X.dtype.kind in "OUS":
        if X.ndim == 2 and X.shape[1] == 1:
            return X[:, 0]
        if X.ndim == 1:
            return X
    elif X.ndim in (3, 4):
        return list(X)
    raise TypeError(f"cannot read a {X.ndim}-D {X.dtype} array as a sequence of images; pass a list")


def extract_features(
    sources: Sequence[Source],
    sets: SetSpecs,
    *,
    size: tuple[int, int],
    lengths: Mapping[str, int],
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = 1,
    progress: bool | None = None,
    suppress_grid: bool = True,
) -> np.ndarray:
    """float32 (len(sources), sum of lengths): the sets' vectors of each page, concatenated in order.

    ``size`` is the page size for sets that declare none; ``lengths`` is each set's vector
    length; a cached entry of another length is recomputed. ``suppress_grid`` is passed to
    :func:`~features.pages.normalise_page`.
    """
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm.auto import tqdm

    sizes = {name: tuple(spec[2] or size) for name, spec in sets.items()}
    # Pages with their grid kept are other rows; the default adds nothing, so older keys still hold.
    grid = {} if suppress_grid else {"grid": "kept"}
    job = _Job(sets=dict(sets), sizes=sizes, lengths=dict(lengths),
               cache=FeatureCache(cache_dir) if cache_dir is not None else None,
               keys={name: config_hash({"sets": {name: spec[0]}, "size": list(sizes[name]), **grid})
                     for name, spec in sets.items()},
               suppress_grid=bool(suppress_grid))
    n = len(sources)
    out = np.empty((n, sum(job.lengths[name] for name in job.sets)), dtype=np.float32)
    with tqdm(total=n, desc="features", unit="page", disable=progress_disabled(progress, n)) as bar:
        if n < 2 or effective_n_jobs(n_jobs) == 1:
            for i, source in enumerate(sources):
                out[i] = _page_row(job, i, source)[1]
                bar.update()
            return out

        def misses():
            """Pages the cache cannot answer, as pool tasks; hits are filled in here, meanwhile.

            Lazily consumed by the pool, so this look-up overlaps the workers' computing; a run
            that is all hits never starts the pool at all.
            """
            for i, source in enumerate(sources):
                row, sha = _cached_row(job, i, source)
                if row is not None:
                    out[i] = row
                    bar.update()
                else:
                    yield delayed(_page_row)(job, i, source, sha)

        tasks = misses()
        first = next(tasks, None)
        if first is not None:
            for i, row in Parallel(n_jobs=n_jobs, return_as="generator")(itertools.chain([first], tasks)):
                out[i] = row
                bar.update()
    return out


class _Job(NamedTuple):
    """Everything a worker needs, picklable: module-level functions, paths, numbers."""

    sets: dict[str, SetSpec]
    sizes: dict[str, tuple[int, int]]  # the page size each set reads
    lengths: dict[str, int]
    cache: FeatureCache | None
    keys: dict[str, str]
    suppress_grid: bool = True


def _page_row(job: _Job, index: int, source: Source, sha: str | None = None) -> tuple[int, np.ndarray]:
    """(index, the page's row), from the cache where possible; ``sha`` when the caller hashed it."""
    keep_heap_top()  # here, so that it also runs in every worker process
    data, name, sha, parts = _cached(job, index, source, sha)
    missing = [set_name for set_name in job.sets if set_name not in parts]
    if missing:
        parts.update(_computed_parts(job, missing, data, name, sha))
    return index, np.concatenate([parts[set_name] for set_name in job.sets])


def _cached_row(job: _Job, index: int, source: Source) -> tuple[np.ndarray | None, str | None]:
    """(the page's cached row or None, its sha256 or None): the parent's quick look before dispatch."""
    if job.cache is None or isinstance(source, np.ndarray):
        return None, None  # nothing to look up: not worth reading the file here
    _, _, sha, parts = _cached(job, index, source)
    if len(parts) < len(job.sets):
        return None, sha
    return np.concatenate([parts[set_name] for set_name in job.sets]), sha


def _cached(job: _Job, index: int, source: Source, sha: str | None = None):
    """(the bytes or array to decode, a name for errors, its sha256 or None, the sets the cache holds)."""
    data, name = _read(source, index)
    if sha is None and job.cache is not None and isinstance(data, bytes):
        sha = hashlib.sha256(data).hexdigest()
    return data, name, sha, (_cached_parts(job, sha) if sha else {})


def _computed_parts(job: _Job, set_names: list[str], data, name: str, sha: str | None) -> dict[str, np.ndarray]:
    try:
        pages: dict[tuple[int, int], NormalisedPage] = {}
        parts = {}
        for set_name in set_names:
            size = job.sizes[set_name]
            if size not in pages:
                pages[size] = read_page(data, size, suppress_grid=job.suppress_grid)
            parts[set_name] = _compute(job, set_name, pages[size])
    except ImageReadError as exc:  # decoded from bytes, the error says "<bytes>": give the real name
        raise ImageReadError(name, exc.reason, exc.hint) from None
    except Exception as exc:  # a bug, not bad data, but the page that shows it must be named
        raise RuntimeError(f"{name}: feature extraction failed ({type(exc).__name__}: {exc})") from exc
    if sha:
        for set_name, row in parts.items():
            _store(job, sha, set_name, row)
    return parts


def read_page(data, size: tuple[int, int], *, suppress_grid: bool = True) -> NormalisedPage | SourcePage:
    """The page as a set of that ``size`` reads it: normalised at ``size``, or read at the source's resolution."""
    if tuple(size) == SOURCE_RESOLUTION:
        return read_source_page(data, strict=False)  # an unrecognised layout reads as flat leads
    return normalise_page(data, size=size, suppress_grid=suppress_grid)


def _read(source: Source, index: int) -> tuple[bytes | np.ndarray, str]:
    """The bytes to decode (read once: hashed and decoded from the same bytes) and a name for errors."""
    if isinstance(source, np.ndarray):
        return source, f"<array X[{index}]>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), f"<bytes X[{index}]>"
    return read_file(source), str(source)


def _cached_parts(job: _Job, sha: str) -> dict[str, np.ndarray]:
    parts = {}
    for set_name in job.sets:
        row = job.cache.get(sha, job.keys[set_name])
        if row is not None and row.dtype == np.float32 and row.shape == (job.lengths[set_name],):
            parts[set_name] = row
    return parts


def _compute(job: _Job, set_name: str, page: NormalisedPage) -> np.ndarray:
    return _set_row(job.sets[set_name][1], page, set_name, job.lengths[set_name])


def _set_row(function, page: NormalisedPage, set_name: str, length: int) -> np.ndarray:
    row = np.asarray(function(page), dtype=np.float32)
    if row.shape != (length,):
        raise RuntimeError(f"feature set {set_name!r} returned shape {row.shape}, expected ({length},)")
    return row


# --- from pages already normalised (explanations perturb these, not the file) ----------------

def normalised_pages(source: Source, sets: SetSpecs, *, size: tuple[int, int],
                     suppress_grid: bool = True) -> dict[tuple[int, int], NormalisedPage]:
    """``source`` normalised once at every page size the sets read: what :func:`rows_from_pages` takes.

    Raises :class:`~features.imageio.ImageReadError` naming the file.
    """
    data, name = _read(source, 0)
    try:
        return {s: read_page(data, s, suppress_grid=suppress_grid)
                for s in dict.fromkeys(tuple(spec[2] or size) for spec in sets.values())}
    except ImageReadError as exc:
        raise ImageReadError(name, exc.reason, exc.hint) from None


def rows_from_pages(pages: Sequence[Mapping[tuple[int, int], NormalisedPage]], sets: SetSpecs, *,
                    size: tuple[int, int], lengths: Mapping[str, int]) -> np.ndarray:
    """The rows :func:`extract_features` would give, from pages normalised by :func:`normalised_pages`.

    For pages changed after normalisation (a lead blanked, say), which no file or cache holds.
    """
    out = np.empty((len(pages), sum(lengths[name] for name in sets)), dtype=np.float32)
    for i, by_size in enumerate(pages):
        out[i] = np.concatenate([_set_row(spec[1], by_size[tuple(spec[2] or size)], name, lengths[name])
                                 for name, spec in sets.items()])
    return out


def _store(job: _Job, sha: str, set_name: str, row: np.ndarray) -> None:
    try:
        job.cache.put(sha, job.keys[set_name], row)
    except OSError as exc:  # a full or read-only cache slows the next run down; it must not stop this one
        log.warning("feature cache: could not write %s (%s)", job.cache.path_for(sha, job.keys[set_name]), exc)
