"""Latency of ``smartecg serve`` per request, warm, for a synthetic page: p50 and p95.

    python bench/serve.py [--requests 30] [--lime-samples 100]

Trains a pipeline over the ``signals`` features on synthetic pages (as TPOT's champions read
them), saves it as SmartECG saves registered models, starts the real server on a free local
port, warms it with one request, then times N sequential requests of one unseen page for each
mode: prediction only (``explain=none``) and with the LIME explanation and overlay
(``explain=lime``), and the page itself (``GET /``). Prints p50, p95 and each mode's ratio to
prediction only, measured in the same run. The server allows LIME (``--allow-lime``) for this.
"""
import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--lime-samples", type=int, default=100)
    args = parser.parse_args()

    import requests
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from automl.model import ECGModel
    from automl.registry import write_model_files
    from features.handcrafted import PageFeatures
    from features.synthetic import generate_dataset

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        train = generate_dataset(root / "train", 20, seed=1, progress=False)
        page = sorted(generate_dataset(root / "test", 1, seed=2, progress=False).glob("MI/*.jpg"))[0].read_bytes()
        paths = sorted(str(p) for p in train.glob("*/*.jpg"))
        labels = [Path(p).parent.name for p in paths]
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        pipeline.fit(PageFeatures(sets=("signals",), n_jobs=-1).transform(paths), labels)
        folder = write_model_files(ECGModel(PageFeatures(sets=("signals",)), pipeline, sorted(set(labels))),
                                   root / "model")
        port = free_port()
        server = subprocess.Popen(smartecg_command() + ["serve", "--model", str(folder), "--port", str(port),
                                                        "--lime-samples", str(args.lime_samples), "--allow-lime"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(f"{url}/healthz", server, "smartecg serve", seconds=120)
            modes = {
                "predict (explain=none)": lambda: requests.post(f"{url}/api/predict?explain=none", data=page),
                f"predict + LIME {args.lime_samples} + overlay": lambda: requests.post(
                    f"{url}/api/predict?explain=lime", data=page),
                "the page (GET /)": lambda: requests.get(url),
            }
            rows = []
            for name, call in modes.items():
                call().raise_for_status()  # warm
                seconds = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    call().raise_for_status()
                    seconds.append(time.perf_counter() - started)
                rows.append((name, np.percentile(seconds, 50), np.percentile(seconds, 95)))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    print(f"{args.requests} sequential requests per mode, warm; cores available: {len(os.sched_getaffinity(0))}")
    print(f"{'mode':40s} {'p50 ms':>9s} {'p95 ms':>9s} {'p50 x predict':>14s}")
    for name, p50, p95 in rows:
        print(f"{name:40s} {1000 * p50:9.1f} {1000 * p95:9.1f} {p50 / rows[0][1]:14.1f}")


if __name__ == "__main__":
    main()
