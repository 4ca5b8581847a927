"""When to show a progress bar: on a terminal, for work long enough to need one."""
from __future__ import annotations


def progress_disabled(progress: bool | None, total: int, *, threshold: int = 50) -> bool | None:
    """tqdm's ``disable`` for an explicit ``progress`` choice, or by default for ``total`` items."""
    if progress is None:
        return True if total < threshold else None  # None: tqdm shows it only on a terminal
    return not progress
