"""Run the `smartecg` command as users do: a real subprocess, stdin never a terminal (as in CI)."""
from __future__ import annotations

import os
import subprocess

from automl.cli import smartecg_command


def smartecg(*args, check=True, env=None, cwd=None, timeout=300):
    # stdin is never a terminal here, as in CI: a command that would ask must refuse instead.
    result = subprocess.run(smartecg_command() + [str(a) for a in args], capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr
    return result
