"""Keep freed heap memory in the process for the next page instead of returning it to the OS.

Every page allocates and frees a few page-sized arrays. glibc's default is to trim the top of
the heap when they are freed and grow it again (sbrk) for the next page, and every page of
memory it grows by is touched fresh: about 1,300 page faults per ECG page, 2.5 ms on a VM,
as much as the whole of page normalisation. Taking those arrays from the heap and padding its top
(``M_MMAP_THRESHOLD`` and ``M_TOP_PAD``, as the ``MALLOC_*_`` environment variables would) keeps
that memory mapped between pages.
"""
from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_heap_top"]

_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3  # glibc's <malloc.h>
_PAD_BYTES = 64 * 1024 * 1024  # a few pages' worth of arrays; memory the process keeps, not uses
# Setting any malloc option turns off glibc's sliding mmap threshold, which would otherwise have
# moved page-sized arrays onto the heap; without this they would get a fresh mmap (and fault)
# every time. Arrays above it (a huge scan) still get their own mapping, returned when freed.
_MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
_applied = False


def keep_heap_top() -> None:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TOP_PAD`` once per process.

    A no-op off Linux or without ``mallopt``.
    """
    global _applied
    if _applied:
        return
    _applied = True
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt: nothing to tune
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    mallopt(_M_TOP_PAD, _PAD_BYTES)
