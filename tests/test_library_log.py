"""Library noise goes to the command's log file, never its stderr (automl.library_log), in a real process."""
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from automl import library_log
from automl.engines.base import TrainingData

# What TensorFlow and friends do in a command: C++ lines on descriptor 2, library loggers, warnings,
# and a child process (an engine worker, a joblib worker) that inherits descriptor 2.
NOISY_COMMAND = textwrap.dedent("""
    import logging, os, subprocess, sys, warnings
    from pathlib import Path
    from automl import library_log
    log = library_log.start("probe", verbose=sys.argv[2] == "verbose", folder=Path(sys.argv[1]))
    logging.basicConfig(level=logging.WARNING, format="smartecg: %(levelname)s: %(message)s")
    os.write(2, b"I0000 00:00:1.0 123 cudart_stub.cc:31] Could not find cuda drivers\\n")
    logging.getLogger("tensorflow").warning("5 out of the last 5 calls triggered tf.function retracing")
    logging.getLogger("mlflow.store").warning("Downloading artifacts: 100%")
    warnings.warn("a library's deprecation", DeprecationWarning)
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('E0000 child noise\\\\n')"])
    logging.getLogger("smartecg").warning("our own warning")
    print("search 0s / 1m | data | 0 trials | no score yet", file=sys.stderr)
    print(log.path)
    log.close()
""")
NOISE = ("cuda drivers", "triggered tf.function retracing", "Downloading artifacts", "DeprecationWarning",
         "E0000 child noise")


def run_noisy(tmp_path, mode):
    result = subprocess.run([sys.executable, "-c", NOISY_COMMAND, str(tmp_path / "logs"), mode], capture_output=True,
                            text=True, timeout=60, cwd=Path(library_log.__file__).parents[1])
    assert result.returncode == 0, result.stderr
    return result, Path(result.stdout.strip())


def test_library_noise_goes_to_the_log_file_and_the_commands_own_lines_to_stderr(tmp_path):
    result, log = run_noisy(tmp_path, "quiet")
    assert [n for n in NOISE if n in result.stderr] == []
    assert "smartecg: WARNING: our own warning" in result.stderr and "search 0s / 1m" in result.stderr
    assert log.parent == tmp_path / "logs" and log.name.startswith("probe-")
    text = log.read_text()
    assert [n for n in NOISE if n not in text] == []
    assert "our own warning" not in text


def test_verbose_keeps_library_noise_on_stderr_and_its_loggers_in_the_file_too(tmp_path):
    result, log = run_noisy(tmp_path, "verbose")
    assert [n for n in NOISE if n not in result.stderr] == []
    text = log.read_text()
    assert "triggered tf.function retracing" in text and "DeprecationWarning" in text


def test_an_empty_log_is_deleted_and_old_ones_are_pruned(tmp_path):
    for i in range(library_log.KEEP + 3):
        (tmp_path / f"probe-2020010{i:02d}-1.log").write_text("old")
    log = library_log.start("probe", folder=tmp_path)
    try:
        assert library_log.current() is log
        assert len(list(tmp_path.glob("probe-*.log"))) == library_log.KEEP
    finally:
        log.close()
    assert library_log.current() is None and not log.path.exists()
    assert logging.getLogger("tensorflow").propagate  # the process's logging as it was


CRASHING_WORKER = textwrap.dedent("""
    import sys
    sys.stderr.write("W0000 00:00 some TensorFlow line\\n")
    raise ValueError("the study's storage is read-only")
""")


def test_a_worker_crash_is_one_line_naming_the_exception_and_the_log_holding_its_output(tmp_path):
    from automl.engines.worker_engine import WorkerEngine

    class Crashing(WorkerEngine):
        name, label, worker_module = "crashing", "Crashing", "crashing_worker"

    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "crashing_worker.py").write_text(CRASHING_WORKER)
    data = TrainingData(paths=["a", "b"], X=np.zeros((2, 1)), y=np.array(["MI", "Normal"]), classes=["MI", "Normal"],
                        features=None, metric="f1_macro", seed=0, workdir=tmp_path / "search")
    engine = Crashing()
    call = engine._new_call(data, 30.0)
    log = library_log.start("probe", folder=tmp_path / "logs")
    try:
        with pytest.raises(RuntimeError) as raised:
            engine._run_worker(call, {}, engine._trial_tail(call, lambda t: None), call.deadline,
                               env={"PYTHONPATH": str(tmp_path / "mods")})
    finally:
        log.close()
    first = str(raised.value).splitlines()[0]
    assert first == (f"Crashing worker failed (exit 1: ValueError: the study's storage is read-only); "
                     f"its output is in {log.path}")
    assert "W0000 00:00 some TensorFlow line" in log.path.read_text()
