"""``smartecg serve`` under bad input: each kind's HTTP status, latency p50/p95 and the server's peak memory.

    python bench/abuse.py [--repeats 5] [--concurrent 20]

Trains a small pipeline over the ``signals`` features on synthetic pages (as bench/serve.py does),
starts the real server with a bearer token, then sends each kind of bad input ``--repeats``
times: corrupt bytes, truncated JPEG and PNG, a 79-megapixel blank PNG of ~100 KB, a 25 MB
upload, text, a PDF, an empty body, each image of ``features.not_ecg`` (blank page, noise, gradient,
bar chart, text, a photo of shapes, a line plot, rows of sine waves), a synthetic page turned
180 and 90 degrees and mirrored, a request without the token, one with another site's Host header; then
``--concurrent`` uploads of a valid page at once. Prints per kind: the statuses seen, the status
expected, p50/p95 latency and the server process's peak resident memory after it (VmHWM from
/proc; psutil's RSS where /proc has none). Targets (printed, not asserted): every kind answered
as expected, the server still up, peak memory under 1 GB, p95 under 2 s for the bad inputs.

The served model carries the page gate a search fits on its training pages (``features.gate``):
the images that are not ECG pages are refused (422, "refused" and the reason) and the turned pages
read (200, status "turned"). The column "gate" shows what the answer said.
"""
import argparse
import concurrent.futures
import io
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]  # the server is started and awaited as the tests do

from cli_helpers import free_port, smartecg_command, wait_until_answering  # noqa: E402

MEMORY_TARGET_MB = 1024
P95_TARGET_S = 2.0


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM); its current RSS from psutil where /proc is not there."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM"))
        return int(line.split()[1]) / 1024
    import psutil

    return psutil.Process(pid).memory_info().rss / 2 ** 20


def encoded(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bad_inputs(page: bytes) -> dict[str, tuple[bytes, str]]:
    """Each kind of bad input: (the body, the status expected)."""
    from PIL import Image

    from features.not_ecg import not_ecg_pages

    rng = np.random.default_rng(0)
    png_page = encoded(Image.open(io.BytesIO(page)), "PNG")
    upright = Image.open(io.BytesIO(page))
    return {
        "corrupt bytes (JPEG magic + noise)": (b"\xff\xd8\xff\xe0" + rng.bytes(200_000), "422"),
        "truncated JPEG": (page[: len(page) // 3], "422"),
        "truncated PNG": (png_page[: len(png_page) // 3], "422"),
        "79 MP blank PNG": (encoded(Image.new("L", (10_000, 7_900), 255), "PNG", optimize=True), "413"),
        "25 MB upload": (b"\xff\xd8\xff\xe0" + rng.bytes(25 * 2 ** 20), "413"),
        "text": (b"Patient notes, not an image\n" * 100, "415"),
        "PDF": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" * 50, "415"),
        "empty body": (b"", "400"),
        **{f"not an ECG: {name}": (encoded(Image.fromarray(image), "JPEG", quality=90), "422")
           for name, image in not_ecg_pages().items()},
        "synthetic page turned 180": (encoded(upright.rotate(180), "JPEG", quality=90), "200"),
        "synthetic page turned 90": (encoded(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90), "200"),
        "synthetic page mirrored": (encoded(upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG",
                                            quality=90), "200"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--pages-per-class", type=int, default=10)
    args = parser.parse_args()

    import requests
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from automl.model import ECGModel
    from automl.registry import write_model_files
    from features.gate import PageGate
    from features.handcrafted import PageFeatures
    from features.synthetic import generate_dataset

    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp:
        root = Path(tmp)
        train = generate_dataset(root / "train", args.pages_per_class, seed=1, progress=False)
        page = sorted(generate_dataset(root / "test", 1, seed=2, progress=False).glob("MI/*.jpg"))[0].read_bytes()
        paths = sorted(str(p) for p in train.glob("*/*.jpg"))
        labels = [Path(p).parent.name for p in paths]
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        pipeline.fit(PageFeatures(sets=("signals",), n_jobs=-1).transform(paths), labels)
        model = ECGModel(PageFeatures(sets=("signals",)), pipeline, sorted(set(labels)))
        model.gate = PageGate().fit(paths)  # as a search fits it, on the training pages
        folder = write_model_files(model, root / "model")
        token = secrets.token_urlsafe(32)
        (root / "token").write_text(token)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(smartecg_command() + ["serve", "--model", str(folder), "--port", str(port),
                                                        "--token-file", str(root / "token")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        auth = {"Authorization": f"Bearer {token}"}
        try:
            wait_until_answering(f"{url}/healthz", server, "smartecg serve", seconds=120)
            requests.post(f"{url}/api/predict", data=page, headers=auth, timeout=60).raise_for_status()  # warm
            baseline = peak_rss_mb(server.pid)
            sends = {kind: (lambda body=body: requests.post(f"{url}/api/predict", data=body, headers=auth,
                                                               timeout=120), expected)
                     for kind, (body, expected) in bad_inputs(page).items()}
            sends["no token"] = (lambda: requests.post(f"{url}/api/predict", data=page, timeout=60), "401")
            sends["another site's Host header"] = (lambda: requests.post(
                f"{url}/api/predict", data=page, headers={**auth, "Host": "evil.example"}, timeout=60), "421")
            rows = []
            for kind, (send, expected) in sends.items():
                seconds, statuses, gate = [], set(), set()
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    answer = send()
                    seconds.append(time.perf_counter() - started)
                    statuses.add(answer.status_code)
                    gate.add(_gate(answer))
                rows.append((kind, statuses, expected, gate, seconds, peak_rss_mb(server.pid)))

            def timed_valid(_):
                started = time.perf_counter()
                answer = requests.post(f"{url}/api/predict", data=page, headers=auth, timeout=300)
                return answer.status_code, time.perf_counter() - started, _gate(answer)

            with concurrent.futures.ThreadPoolExecutor(args.concurrent) as pool:
                results = list(pool.map(timed_valid, range(args.concurrent)))
            rows.append((f"{args.concurrent} concurrent valid pages", {s for s, _, _ in results}, "200",
                         {g for _, _, g in results}, [t for _, t, _ in results], peak_rss_mb(server.pid)))
            up = requests.get(f"{url}/healthz", timeout=10).status_code == 200 and server.poll() is None
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    print(f"smartecg serve under abuse; {args.repeats} requests per kind, sequential; cores available: "
          f"{len(os.sched_getaffinity(0))}; server peak RSS after warm-up {baseline:.0f} MB")
    print(f"{'kind':36s} {'status':>8s} {'expected':>18s} {'gate':>10s} {'p50 ms':>8s} {'p95 ms':>8s} "
          f"{'peak MB':>8s}")
    for kind, statuses, expected, gate, seconds, peak in rows:
        seen = ",".join(map(str, sorted(statuses)))
        print(f"{kind:36s} {seen:>8s} {expected:>18s} {','.join(sorted(gate)):>10s} "
              f"{1000 * np.percentile(seconds, 50):8.0f} {1000 * np.percentile(seconds, 95):8.0f} {peak:8.0f}")
    right = all(_as_expected(statuses, expected) for _, statuses, expected, _, _, _ in rows)
    peak = max(row[5] for row in rows)
    bad_p95 = max(np.percentile(row[4], 95) for row in rows[:-1])
    print(f"targets: every kind answered as expected: {'yes' if right else 'NO'}; server up after: "
          f"{'yes' if up else 'NO'}; peak RSS {peak:.0f} MB (target < {MEMORY_TARGET_MB}): "
          f"{'met' if peak < MEMORY_TARGET_MB else 'MISSED'}; worst p95 of the bad inputs {bad_p95:.2f} s "
          f"(target < {P95_TARGET_S:g}): {'met' if bad_p95 < P95_TARGET_S else 'MISSED'}")


def _gate(answer) -> str:
    """The model's status for the page ("read", "turned", "refused"), or "-" when its answer has none."""
    try:
        return str(answer.json().get("status", "-"))
    except ValueError:
        return "-"


def _as_expected(statuses: set[int], expected: str) -> bool:
    return statuses == {int(expected)}


if __name__ == "__main__":
    main()
