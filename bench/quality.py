"""The benchmark SmartECG is judged by: its champion against plain AutoML on the same data and budget.

    python bench/quality.py --data DIR --test DIR --budget 20m [--experiment default] [--arms smartecg,tpot]

On the training folder ``--data`` (dataset layout: ``<Class>/*.jpg``) each arm gets the same
budget; each is then scored on every page of the separate ``--test`` folder:

* ``smartecg``: ``smartecg search`` with the experiment spec, into a private MLflow store; its
  champion is scored with ``smartecg evaluate`` (metrics overall and per layout).
* ``tpot``: plain TPOT (default settings, its ``max_time_mins`` = the budget) on HOG features
  of the whole page resized to 128x192, header and all: what one would try first.
* ``autokeras``: plain AutoKeras (``ak.ImageClassifier`` with its defaults: its search space and
  starts, greedy tuner, ``max_trials=100``, early stopping with patience 10) on whole pages
  resized to 128x192. AutoKeras has no time budget of its own, so two things are ours: a Keras
  callback stops training at the budget and no trial starts after it, and the validation pages
  are passed as ``validation_data`` (a stratified fifth, as its default ``validation_split=0.2``
  would take) so that the search ends with the best trial's best epoch instead of AutoKeras's
  final refit on all pages, an extra fit the budget has no room for. Its pretrained start
  (EfficientNet-B7 with ImageNet weights) fails here: there is no download.

Prints accuracy, macro-F1 and per-class F1 side by side, plus wall time, and writes them to
``--out`` (JSON) when given. Nothing is cached between arms except SmartECG's own feature cache,
which lives in a private folder too.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from _search import smartecg_command, timed_search  # noqa: E402
from automl.budget import parse_duration  # noqa: E402

ARMS = ("smartecg", "tpot", "autokeras")
_PLAIN_SHAPE = (128, 192)


def run_smartecg(data: Path, test: Path, budget: float, experiment: str, work: Path) -> dict:
    env = {**os.environ, "SMARTECG_CACHE": str(work / "cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"}
    wall, search = timed_search(data, budget, experiment, env, work)
    if search.returncode != 0:
        return {"error": f"search exited {search.returncode}: {search.stdout[-2000:]}{search.stderr[-2000:]}",
                "wall_seconds": wall}
    scores = work / "smartecg-test"
    subprocess.run(smartecg_command() + ["evaluate", str(test), "--out", str(scores)], env=env, cwd=work,
                   capture_output=True, text=True, check=True)
    metrics = json.loads((scores / "metrics.json").read_text())
    lines = search.stdout.splitlines()
    best = next((line for line in lines if line.startswith("best: ")), "")
    finished = next((line for line in lines if line.startswith("search finished")), "")
    return {**_headline(metrics), "by_group": metrics.get("by_group", {}), "wall_seconds": wall,
            "model": best[len("best: "):], "search": finished}


def run_plain_tpot(data: Path, test: Path, budget: float, work: Path) -> dict:
    """TPOT with its defaults on whole-page HOG, in a subprocess (TPOT starts Dask workers)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--plain-tpot-worker", str(data), str(test), str(budget),
                           str(work / "tpot.json")], cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": f"plain TPOT exited {done.returncode}: {done.stderr[-2000:]}", "wall_seconds": wall}
    return {**json.loads((work / "tpot.json").read_text()), "wall_seconds": wall}


def run_plain_autokeras(data: Path, test: Path, budget: float, work: Path) -> dict:
    """AutoKeras with its defaults on resized whole pages, in a subprocess, stopped at the budget."""
    started = time.perf_counter()
    deadline = time.time() + budget
    try:
        # The grace covers the best network's reload and the test pages' predictions after the stop.
        done = subprocess.run([sys.executable, __file__, "--plain-autokeras-worker", str(data), str(test),
                               str(deadline), str(work / "autokeras.json")], cwd=work, capture_output=True,
                              text=True, timeout=budget + 120, env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"})
    except subprocess.TimeoutExpired:
        return {"error": f"no model {budget + 120:.0f} s after the start", "wall_seconds": time.perf_counter() - started}
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": f"plain AutoKeras exited {done.returncode}: {done.stderr[-2000:]}", "wall_seconds": wall}
    return {**json.loads((work / "autokeras.json").read_text()), "wall_seconds": wall}


def _plain_autokeras_worker(data: str, test: str, deadline: str, out: str) -> int:
    import threading

    import autokeras as ak
    import keras
    import numpy as np
    from sklearn.model_selection import train_test_split

    from automl.evaluate import evaluate

    stop_at = float(deadline)
    x_pages, y_pages, classes = _whole_pages(Path(data))
    x_test, y_test, _ = _whole_pages(Path(test))
    y = np.array([classes.index(c) for c in y_pages])
    train, val = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    classifier = ak.ImageClassifier(overwrite=True, directory=str(Path(out).parent / "ak"), seed=0)

    class StopAtBudget(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.time() >= stop_at:
                self.model.stop_training = True

    def end_search() -> None:  # keras-tuner stops asking for trials once the oracle has max_trials
        time.sleep(max(0.0, stop_at - time.time()))
        oracle = classifier.tuner.oracle
        oracle.max_trials = max(1, len(oracle.trials))

    threading.Thread(target=end_search, daemon=True).start()
    start = time.time()
    classifier.fit(x_pages[train], y[train], validation_data=(x_pages[val], y[val]), verbose=0,
                   callbacks=[keras.callbacks.EarlyStopping(patience=10, min_delta=1e-4), StopAtBudget()])
    search_seconds = time.time() - start
    trials = classifier.tuner.oracle.trials.values()
    proba = np.asarray(classifier.export_model().predict(x_test, verbose=0), dtype=float)
    evaluation = evaluate(y_test, proba, classes)
    best = classifier.tuner.oracle.get_best_trials(1)[0].hyperparameters.values
    Path(out).write_text(json.dumps({
        **_headline(evaluation.metrics), "search_seconds": search_seconds,
        "trials": {str(status): sum(str(t.status) == str(status) for t in trials) for status in {t.status for t in trials}},
        "model": f"ak.ImageClassifier defaults; best trial: {best.get('image_block_1/block_type')} "
                 f"{ {k: v for k, v in best.items() if not k.startswith('image_block_1/')} }"}))
    return 0


def _plain_tpot_worker(data: str, test: str, budget: str, out: str) -> int:
    import warnings

    from automl.engines.tpot_worker import _import_tpot
    from automl.evaluate import evaluate

    warnings.simplefilter("ignore")
    tpot = _import_tpot()
    X_train, y_train, classes = _whole_page_hog(Path(data))
    X_test, y_test, _ = _whole_page_hog(Path(test))
    estimator = tpot.TPOTClassifier(max_time_mins=float(budget) / 60.0, n_jobs=2, random_state=0, verbose=0)
    estimator.fit(X_train, y_train)
    proba = estimator.predict_proba(X_test)
    order = [list(estimator.classes_).index(c) for c in classes]
    evaluation = evaluate(y_test, proba[:, order], classes)
    Path(out).write_text(json.dumps({**_headline(evaluation.metrics), "model": str(estimator.fitted_pipeline_)}))
    return 0


def _whole_page_hog(root: Path):
    """HOG of each whole page (header, margins and all) resized to 128x192: the naive pipeline."""
    import numpy as np
    from skimage.feature import hog
    from skimage.transform import resize

    from features.dataset import scan
    from features.imageio import load_image

    frame = scan(root, progress=False).frame
    rows = [hog(resize(load_image(p, max_side=512), _PLAIN_SHAPE, anti_aliasing=True), pixels_per_cell=(16, 16))
            for p in frame["path"]]
    labels = frame["label"].to_numpy(dtype=object)
    return np.array(rows, dtype=np.float32), labels, sorted(set(labels))


def _whole_pages(root: Path):
    """Whole pages (header, margins and all) as greyscale 128x192 images, ink dark: the naive input."""
    import numpy as np
    from skimage.transform import resize

    from features.dataset import scan
    from features.imageio import load_image

    frame = scan(root, progress=False).frame
    pages = [resize(load_image(p, max_side=512), _PLAIN_SHAPE, anti_aliasing=True) for p in frame["path"]]
    labels = frame["label"].to_numpy(dtype=object)
    return np.array(pages, dtype=np.float32)[..., None], labels, sorted(set(labels))


def _headline(metrics: dict) -> dict:
    keep = ("accuracy", "macro_f1", "balanced_accuracy", "roc_auc")
    return {**{k: metrics[k] for k in keep if k in metrics},
            "f1": {k[3:]: v for k, v in metrics.items() if k.startswith("f1_")}}


def print_table(results: dict) -> None:
    classes = sorted({c for r in results.values() for c in r.get("f1", {})})
    print(f"{'arm':10s} {'accuracy':>8s} {'macro-F1':>8s} " + " ".join(f"{c[:10]:>10s}" for c in classes)
          + f" {'wall s':>8s}")
    for arm, r in results.items():
        if "error" in r:
            print(f"{arm:10s} failed: {r['error'].splitlines()[0]}")
            continue
        print(f"{arm:10s} {r['accuracy']:8.3f} {r['macro_f1']:8.3f} "
              + " ".join(f"{r['f1'].get(c, float('nan')):10.3f}" for c in classes) + f" {r['wall_seconds']:8.0f}")
    for arm, r in results.items():
        for kind, groups in r.get("by_group", {}).items():
            for group, v in groups.items():
                print(f"  {arm} {kind} {group}: n={int(v['n'])} accuracy {v['accuracy']:.3f} macro-F1 {v['macro_f1']:.3f}")
        if r.get("model"):
            print(f"  {arm} model: {r['model'][:200]}")
        if r.get("search"):
            print(f"  {arm} {r['search']}")
        if r.get("trials"):
            print(f"  {arm} trials by status: {r['trials']}; search {r['search_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--plain-tpot-worker":
        return _plain_tpot_worker(*argv[1:5])
    if argv and argv[0] == "--plain-autokeras-worker":
        return _plain_autokeras_worker(*argv[1:5])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="training folder (<Class>/*.jpg)")
    parser.add_argument("--test", type=Path, required=True, help="separate test folder, same layout")
    parser.add_argument("--budget", default="20m", help="each arm's budget, e.g. 20m")
    parser.add_argument("--experiment", default="default", help="SmartECG experiment spec")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    budget = parse_duration(args.budget)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="smartecg-quality-") as tmp:
        for arm in arms:
            work = Path(tmp) / arm
            work.mkdir()
            print(f"{arm}: running with a {args.budget} budget...", flush=True)
            if arm == "smartecg":
                results[arm] = run_smartecg(args.data.resolve(), args.test.resolve(), budget, args.experiment, work)
            elif arm == "tpot":
                results[arm] = run_plain_tpot(args.data.resolve(), args.test.resolve(), budget, work)
            else:
                results[arm] = run_plain_autokeras(args.data.resolve(), args.test.resolve(), budget, work)
    print(f"train {args.data}, test {args.test}, budget {args.budget} per arm")
    print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
