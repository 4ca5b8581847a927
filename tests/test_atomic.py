"""features.atomic: a file is replaced whole or not at all, and a failed write leaves nothing behind."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from features.atomic import replacing, write_bytes, write_text

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


def test_a_write_that_fails_mid_way_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "last_scan.csv"
    target.write_text("old content\n")
    # A real failure part-way through the write: the file-size limit is hit after 4 KiB are on disk.
    done = _run(f"""
        import resource, signal
        from features.atomic import write_bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_bytes({str(target)!r}, b"x" * 100_000)
        except OSError as exc:
            print("failed:", exc.strerror)
    """)
    assert "failed: File too large" in done.stdout, done.stderr
    assert target.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_scan.csv"]


def test_a_library_that_fails_while_saving_to_the_path_leaves_the_old_file(tmp_path):
    target = tmp_path / "backbone.keras"
    target.write_bytes(b"previous model")
    with pytest.raises(RuntimeError, match="out of memory"):
        with replacing(target) as part:
            assert part.parent == tmp_path and part.name.endswith(".keras")  # Keras checks the suffix
            part.write_bytes(b"half a mod")
            raise RuntimeError("out of memory")
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["backbone.keras"]


def test_a_folder_saved_to_the_temporary_path_lands_whole(tmp_path):
    target = tmp_path / "exported"
    with replacing(target) as part:
        part.mkdir()
        (part / "weights.bin").write_bytes(b"w")
    assert (target / "weights.bin").read_bytes() == b"w"
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]


def test_text_and_bytes_replace_the_content_with_ordinary_permissions(tmp_path):
    target = tmp_path / "startup.json"
    write_text(target, "{}")
    write_bytes(target, b'{"optuna": [1.5]}')
    assert target.read_bytes() == b'{"optuna": [1.5]}'
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["startup.json"]
