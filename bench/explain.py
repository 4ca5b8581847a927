"""Seconds per explanation, per method, on the same pages in one run.

    python bench/explain.py [--pages N] [--lime-samples 100 300]

Trains two small models on synthetic MI and Normal pages (a CNN on the lead mosaic, as the
Optuna engine makes them, and a logistic regression on the ``signals`` features, as TPOT's
pipelines read them), then times on N unseen MI pages: Grad-CAM on the network, LIME on the
network and on the pipeline at each sample count, and drawing the overlay PNG. Prints the
median seconds per page and each method's ratio to Grad-CAM, and the thread count TensorFlow
and the feature code ran with (2 cores in CI).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5, help="MI pages explained per method (default 5)")
    parser.add_argument("--lime-samples", type=int, nargs="+", default=[100, 300])
    args = parser.parse_args()

    from automl.engines.deep_training import configure_tensorflow, train_network
    from automl.engines.keras_model import KerasClassifier
    from automl.engines.networks import build_network
    from automl.explain import explain
    from automl.model import ECGModel
    from automl.overlay import write_overlay
    from features.handcrafted import PageFeatures
    from features.synthetic import generate_dataset
    from features.tensors import PageTensors
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    configure_tensorflow(0)
    classes = ["MI", "Normal"]
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as tmp:
        root = Path(tmp)
        train = generate_dataset(root / "train", 30, seed=1, progress=False)
        test = generate_dataset(root / "test", args.pages, seed=2, progress=False)
        paths = [str(p) for c in classes for p in sorted((train / c).glob("*.jpg"))]
        y = np.array([classes.index(Path(p).parent.name) for p in paths])
        pages = [str(p) for p in sorted((test / "MI").glob("*.jpg"))][: args.pages]

        tensors = PageTensors(view="leads", size=(64, 96), n_jobs=-1)
        x = tensors.transform(paths)
        network = build_network("cnn", x.shape[1:], 2, width=16, depth=3)
        train_network(network, x, y, x[:8], y[:8], metric="macro_f1", epochs=6, learning_rate=2e-3)
        cnn = ECGModel(PageTensors(view="leads", size=(64, 96)), KerasClassifier(network, 2), classes)
        features = PageFeatures(sets=("signals",))
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        pipeline.fit(PageFeatures(sets=("signals",), n_jobs=-1).transform(paths), y)
        linear = ECGModel(features, pipeline, classes)

        arms = [("Grad-CAM, CNN on the lead mosaic", lambda p: explain(cnn, p, method="gradcam"))]
        for n in args.lime_samples:
            arms.append((f"LIME {n} samples, CNN", lambda p, n=n: explain(cnn, p, method="lime", lime_samples=n)))
            arms.append((f"LIME {n} samples, signals pipeline",
                         lambda p, n=n: explain(linear, p, method="lime", lime_samples=n)))
        explain(cnn, pages[0], method="gradcam")  # warm: TensorFlow's first call traces the graph
        rows, explained = [], {}
        for name, run in arms:
            seconds = []
            for page in pages:
                started = time.perf_counter()
                explained.setdefault(page, run(page))  # the Grad-CAM ones are drawn below
                seconds.append(time.perf_counter() - started)
            rows.append((name, float(np.median(seconds))))
        drawn = []
        for page, found in explained.items():
            started = time.perf_counter()
            write_overlay(found, page, root / "overlay.png")
            drawn.append(time.perf_counter() - started)
        rows.append(("overlay PNG (any method)", float(np.median(drawn))))

    print(f"{len(pages)} pages, median seconds per page; cores available: {len(os.sched_getaffinity(0))}")
    print(f"{'method':44s} {'s/page':>8s} {'x Grad-CAM':>11s}")
    for name, seconds in rows:
        print(f"{name:44s} {seconds:8.3f} {seconds / rows[0][1]:11.1f}")


if __name__ == "__main__":
    main()
