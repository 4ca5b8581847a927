"""The registered model (MLflow pyfunc) against its ONNX export's light runtime, side by side.

    python bench/export.py [--real] [--per-class 8] [--runs 3] [--model URI]

Printed for each: the installed size of what it needs (the distributions the pyfunc's own
requirements pull in, against numpy + scipy + Pillow + onnxruntime), cold start (a new process
until its first page is answered, median of ``--runs``), per-page latency p50/p95 (pages one at a
time, as they arrive, after the first), peak memory (the process's max RSS), and the ratio
light/pyfunc of each; then parity: pages given the same status and class, and the largest
probability difference.

The model: a portfolio-style pipeline (median imputation + histogram gradient boosting, sigmoid
calibration, page gate) trained on generated pages, or with ``--real`` on
../shared/data/ecg-real-train and measured on ecg-real-sample; ``--model`` takes a registered
model instead (``models:/smartecg@champion`` with MLFLOW_TRACKING_URI set).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

REAL = REPO_ROOT.parent / "shared" / "data"
# What a light install lacks: blocked in the light worker, so it runs as it would there.
HEAVY = ("sklearn", "skimage", "pandas", "mlflow", "tensorflow", "keras", "autokeras", "tpot", "neurokit2", "joblib",
         "tqdm", "matplotlib", "wfdb", "torch", "skl2onnx", "onnx", "tf2onnx")


class _NotInALightInstall:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{name} is not part of a light install")
        return None


# --- the two sides, each in its own process ------------------------------------------------------

def worker(side: str, folder: str, pages: list[str]) -> None:
    """Load, answer each page alone, print timings and answers as one JSON line."""
    started = time.time()
    if side == "pyfunc":
        import automl._mlflow_env  # noqa: F401
        import mlflow.pyfunc
        import pandas as pd

        loaded = mlflow.pyfunc.load_model(folder)

        def answer(page):
            row = loaded.predict(pd.DataFrame({"image": [page]})).iloc[0]
            return {"status": row["status"], "class": row["class"],
                    "p": [float(v) for k, v in row.items() if k.startswith("p_")]}
    else:
        sys.meta_path.insert(0, _NotInALightInstall())
        sys.path.insert(0, folder)
        from light_runtime import load

        model = load(folder)

        def answer(page):
            row = model.classify([page])[0]
            return {"status": row["status"], "class": row["class"],
                    "p": [float("nan") if v is None else v for v in row["probabilities"].values()]}
    answers, latencies = [], []
    for page in pages:
        start = time.perf_counter()
        answers.append(answer(page))
        latencies.append(time.perf_counter() - start)
        if len(answers) == 1:
            first = time.time()
    print(json.dumps({"started": started, "first_answer": first, "latencies": latencies[1:], "answers": answers,
                      "max_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh at exec (ru_maxrss keeps the
    parent's peak from before the fork, the bench's own)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_side(side: str, folder: Path, pages: list[str]) -> dict:
    spawned = time.time()
    done = subprocess.run([sys.executable, __file__, "--worker", side, str(folder), *pages],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"bench/export.py: the {side} worker failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cold_start"] = result["first_answer"] - spawned
    return result


# --- installed size ----------------------------------------------------------------------------------

def installed_mb(requirements: list[str]) -> tuple[float, int]:
    """(MB on disk, number of distributions) of ``requirements`` and everything they require, as installed here."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r).name for r in requirements]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or platform-only requirement not installed here
        seen[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    size = 0
    for dist in seen.values():
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            if path.is_file():
                size += path.stat().st_size
    return size / 2 ** 20, len(seen)


# --- the model -----------------------------------------------------------------------------------------

def pages_for(real: bool, per_class: int, tmp: Path) -> tuple[list[str], list[str], str]:
    if real:
        train, test = REAL / "ecg-real-train", REAL / "ecg-real-sample"
        if not train.is_dir() or not test.is_dir():
            sys.exit(f"bench/export.py: --real needs {train} and {test}")
        return sorted(map(str, train.glob("*/*.jpg"))), sorted(map(str, test.glob("*/*.jpg"))), "real (Khan et al.)"
    from features.synthetic import LayoutMix, generate_dataset

    mix = LayoutMix(six_by_two=0.3, gridless=0.3)
    train = generate_dataset(tmp / "train", per_class, seed=31, layouts=mix, progress=False)
    test = generate_dataset(tmp / "test", max(2, per_class // 2), seed=32, layouts=mix, progress=False)
    return sorted(map(str, train.glob("*/*.jpg"))), sorted(map(str, test.glob("*/*.jpg"))), "generated"


def trained_model(train: list[str]):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline

    from automl.calibration import OneVsRestCalibration
    from automl.model import ECGModel
    from features.cache import default_cache_dir
    from features.gate import PageGate
    from features.handcrafted import PageFeatures

    labels = np.array([Path(p).parent.name for p in train], dtype=object)
    classes = sorted(set(labels))
    X = PageFeatures(sets=("signals", "trace"), n_jobs=-1, cache_dir=default_cache_dir()).transform(train)
    y = np.array([classes.index(label) for label in labels])
    pipeline = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                             HistGradientBoostingClassifier(class_weight="balanced", random_state=0))
    out_of_fold = cross_val_predict(pipeline, X, y, cv=5, method="predict_proba")
    model = ECGModel(PageFeatures(sets=("signals", "trace")), pipeline.fit(X, y), classes, engine="portfolio",
                     description="SimpleImputer -> HistGradientBoostingClassifier(class_weight='balanced')")
    model.calibrator = OneVsRestCalibration("sigmoid").fit(out_of_fold, y)
    model.uncertain_below = 0.6
    model.gate = PageGate().fit(train)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="train and measure on the shared real pages")
    parser.add_argument("--per-class", type=int, default=8, help="generated training pages per class")
    parser.add_argument("--runs", type=int, default=3, help="cold starts per side (the median is printed)")
    parser.add_argument("--model", default=None, help="a registered model URI instead of training one")
    args = parser.parse_args()

    from automl.export import LIGHT_REQUIREMENTS, export_model
    from automl.registry import _requirements, write_model_files

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = Path(tmp)
        train, test, kind = pages_for(args.real, args.per_class, tmp)
        if args.model:
            import mlflow.pyfunc

            from automl.predict import ecg_model

            model = ecg_model(mlflow.pyfunc.load_model(args.model))
        else:
            print(f"training on {len(train)} {kind} pages ...", flush=True)
            model = trained_model(train)
        pyfunc_folder = write_model_files(model, tmp / "pyfunc")
        export_folder = export_model(model, tmp / "ecg_export")
        pyfunc_mb, pyfunc_dists = installed_mb(_requirements(model))
        light_mb, light_dists = installed_mb(list(LIGHT_REQUIREMENTS))
        smartecg_mb, _ = installed_mb(["smartecg"])
        export_mb = sum(f.stat().st_size for f in export_folder.rglob("*") if f.is_file()) / 2 ** 20
        print(f"{model!r}\nmeasured on {len(test)} {kind} pages; cold start: median of {args.runs} new processes",
              flush=True)

        sides = {}
        for side, folder in (("pyfunc", pyfunc_folder), ("light", export_folder)):
            runs = [run_side(side, folder, test if i == 0 else test[:1]) for i in range(args.runs)]
            sides[side] = dict(runs[0], cold_start=statistics.median(r["cold_start"] for r in runs),
                               max_rss_mb=max(r["max_rss_mb"] for r in runs))

    def row(name, pyfunc, light, unit_format):
        print(f"{name:<26}{unit_format.format(pyfunc):>14}{unit_format.format(light):>14}{light / pyfunc:>14.3f}")

    print(f"\n{'':<26}{'pyfunc':>14}{'light':>14}{'light/pyfunc':>14}")
    print(f"{'installed (MB)':<26}{pyfunc_mb:>14.0f}{light_mb:>14.0f}{light_mb / pyfunc_mb:>14.3f}"
          f"   ({pyfunc_dists} vs {light_dists} distributions: the model's declared requirements vs the four)")
    print(f"{'  all of smartecg (MB)':<26}{smartecg_mb:>14.0f}{light_mb:>14.0f}{light_mb / smartecg_mb:>14.3f}"
          f"   (the export folder itself: {export_mb:.1f} MB)")
    row("cold start (s)", sides["pyfunc"]["cold_start"], sides["light"]["cold_start"], "{:.2f}")
    for q in (50, 95):
        row(f"latency p{q} (ms/page)", 1000 * np.percentile(sides["pyfunc"]["latencies"], q),
            1000 * np.percentile(sides["light"]["latencies"], q), "{:.0f}")
    row("peak memory (MB)", sides["pyfunc"]["max_rss_mb"], sides["light"]["max_rss_mb"], "{:.0f}")

    a, b = sides["pyfunc"]["answers"], sides["light"]["answers"]
    same = sum((x["status"], x["class"]) == (y["status"], y["class"]) for x, y in zip(a, b))
    diffs = [np.nanmax(np.abs(np.subtract(x["p"], y["p"]))) for x, y in zip(a, b) if x["status"] != "refused"]
    refused = sum(x["status"] == "refused" for x in a)
    print(f"\nparity: same status and class on {same}/{len(a)} pages ({refused} refused); "
          f"largest probability difference {max(diffs, default=0.0):.2e}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main()
