"""Run the `smartecg` command as users do: a real subprocess, stdin never a terminal (as in CI).

Also for the servers it starts (`smartecg ui`, `smartecg serve`): a free local port, and the wait
until one answers. ``bench/serve.py`` uses these too.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request

from automl.cli import smartecg_command

# Library noise a command must not print (issue 24): TensorFlow/absl C++ lines, tf.function
# retracing, Python warnings, MLflow's download bars. automl.library_log sends it to a log file.
NOISE = re.compile(r"oneDNN|cuda|TF-TRT|I0000 00:00|W0000|E0000|absl::InitializeLog|computation placer"
                   r"|triggered tf\.function retracing|Downloading artifacts|\w+Warning: ", re.IGNORECASE)


def noise_in(text: str) -> list[str]:
    """The lines of ``text`` that are library noise."""
    return [line for line in text.splitlines() if NOISE.search(line)]


def smartecg(*args, check=True, env=None, cwd=None, timeout=300):
    # stdin is never a terminal here, as in CI: a command that would ask must refuse instead.
    result = subprocess.run(smartecg_command() + [str(a) for a in args], capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def free_port() -> int:
    """A local TCP port nothing listens on, for a server to start on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(url: str, process: subprocess.Popen, what: str, seconds: float = 120) -> None:
    """Poll ``url`` until it answers 200; fails naming ``what`` if ``process`` exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:  # not listening yet, or an error status
            pass
        assert process.poll() is None, f"{what} exited ({process.returncode}) before answering {url}: " + (
            process.stderr.read() if process.stderr else "")
        assert time.monotonic() < deadline, f"{what} did not answer {url} within {seconds:.0f} s"
        time.sleep(0.5)
