"""The benchmark SmartECG is judged by: its search against every simpler way, on the same pages and budget.

    python bench/quality.py [--data DIR] [--test DIR] [--budget 20m] [--experiment default]
                            [--arms smartecg,engines,defaults,tpot,autokeras] [--seeds N] [--first-seed S] [--out FILE]
                            [--only-engines optuna,autokeras] [--weights-dir DIR]
    python bench/quality.py --leave-site-out [--data DIR] [--test DIR] [--rounds 20] [--hidden 0] [--out FILE]

Trains on ``--data`` (default ``../shared/data/ecg-real-train`` when it exists) and scores every
arm on every page of ``--test`` (default ``../shared/data/ecg-real-sample``). The arms:

* ``smartecg``: ``smartecg search`` with the experiment spec, into a private MLflow store; its
  champion answers the test pages (``smartecg predict --json``). ``--seeds N`` repeats it
  (seeds 0..N-1, or from ``--first-seed S``).
* ``engines``: the same search with each of the spec's engines alone (``--engines NAME``), same
  budget: ``engine:portfolio``, ``engine:tpot``, ``engine:optuna``, ``engine:autokeras``
  (``--only-engines`` picks some). Every arm starts with an empty cache, so the deep engines
  learn from scratch; with ``--weights-dir DIR`` (backbones from ``smartecg pretrain --out DIR``)
  the Optuna engine runs a second time, its ``transfer`` family starting from those backbones:
  ``engine:optuna+pretrained`` (AutoKeras's ImageClassifier has no place for a custom block).
* ``defaults``: scikit-learn's HistGradientBoosting, logistic regression (scaled), random forest
  and RBF SVC (scaled), default settings, on the spec's feature sets of the lead area: what a user
  would try by hand.
* ``tpot``: plain TPOT (default settings, ``max_time_mins`` = the budget) on HOG of the whole
  page resized to 128x192, header and all.
* ``autokeras``: plain AutoKeras (``ak.ImageClassifier`` defaults, greedy tuner, early stopping)
  on whole pages resized to 128x192, stopped at the budget by a Keras callback (no trial starts
  after it); the validation pages are a stratified fifth passed as ``validation_data``, so the
  search ends with the best trial's best epoch rather than a final refit the budget has no room
  for. Its pretrained start needs a download and fails here.

``--leave-site-out`` runs instead the leave-one-site-out figure (no arm, no budget): the pages
of ``--data`` and ``--test`` together, cut into sites APPROXIMATED by page family (layout and
page size from the data survey, ``features.sites.approximate_sites``: the public dataset names no
hospital); for every site a federated and a pooled head (``--rounds``, ``--hidden``, the spec's
feature sets) trained on the other sites and tested on all its pages, beside the in-distribution
figure (federated and pooled heads on every site's train pages, scored on their holdout pages).

Every arm is scored the same way (:mod:`_scoring`): 5-class, 4-class cardiac (true COVID left
out), 3x4 pages, 6x2 pages (layout from ``features.survey``) and 3x4 cardiac, each accuracy and
macro-F1 with a 95% bootstrap interval, per-class F1 and wall time; SmartECG's arms also show the
share of the cores their search kept busy. Results on the public dataset: cite Khan et al., Data
in Brief 34 (2021) 106762, doi 10.17632/gwbz3fsgp8 (CC BY 4.0).
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# First, even when PYTHONPATH has it: bench/features.py beside this script would hide the package.
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from _scoring import format_row, score_answers  # noqa: E402
from _search import smartecg_command, timed_search  # noqa: E402
from automl.budget import parse_duration  # noqa: E402

ARMS = ("smartecg", "engines", "defaults", "tpot", "autokeras")
DEEP_ENGINES = ("optuna",)  # the engines a pretrained backbone can start (AutoKeras's ImageClassifier takes no custom block)
_PLAIN_SHAPE = (128, 192)
_SHARED = REPO_ROOT.parent / "shared" / "data"


def run_smartecg(data: Path, test_paths: list[str], budget: float, experiment: str, work: Path, *,
                 engines: str | None = None, seed: int = 0, weights_dir: Path | None = None) -> dict:
    """A search (of ``engines`` alone when given) and its champion's answers on the test pages."""
    from automl.experiment import load_spec

    env = {**os.environ, "SMARTECG_CACHE": str(work / "cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"}
    extra = (["--engines", engines] if engines else []) + ["--seed", str(seed)]
    extra += ["--weights-dir", str(weights_dir)] if weights_dir else []
    wall, search = timed_search(data, budget, experiment, env, work, extra=extra)
    if search.returncode != 0:
        return {"error": f"search exited {search.returncode}: {search.stdout[-2000:]}{search.stderr[-2000:]}",
                "wall_seconds": wall}
    registry = load_spec(experiment).registry_name
    answers = subprocess.run(smartecg_command() + ["predict", *test_paths, "--json", "--model",
                                                   f"models:/{registry}@champion"],
                             env=env, cwd=work, capture_output=True, text=True)
    rows = [json.loads(line) for line in answers.stdout.splitlines() if line.startswith("{")]
    lines = search.stdout.splitlines()
    return {"answers": {r["image"]: r["probabilities"] for r in rows}, "wall_seconds": wall,
            "model": next((line[len("best: "):] for line in lines if line.startswith("best: ")), ""),
            "search": "\n".join(_summary_lines(lines))}


def _summary_lines(summary: list[str]) -> list[str]:
    """The search's closing line, its lines per engine call (what each did with its time), and
    how the champion was chosen, scored on the search's holdout, refitted and registered."""
    start = next((i for i, line in enumerate(summary) if line.startswith("search finished")), None)
    if start is None:
        return []
    out = [summary[start]]
    for line in summary[start + 1:]:
        if not line.startswith("  "):
            break
        out.append(line)
    return out + [line for line in summary if line.startswith(("chosen on: ", "holdout: ", "model: ", "registry: "))]


def run_defaults(data: Path, test_paths: list[str], experiment: str, work: Path) -> dict[str, dict]:
    """scikit-learn's defaults on the spec's feature sets (lead area only), one arm per model."""
    import warnings

    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from automl.experiment import load_spec
    from features.dataset import scan
    from features.handcrafted import PageFeatures

    spec = load_spec(experiment)
    started = time.perf_counter()
    frame = scan(data, progress=False).frame
    features = PageFeatures(sets=tuple(spec.features), n_jobs=-1, cache_dir=work / "cache", progress=False)
    X, y = features.transform([str(p) for p in frame["path"]]), frame["label"].to_numpy(dtype=object)
    X_test = features.transform(test_paths)
    prepared = time.perf_counter() - started

    def filled(model, scale=True):  # missing measures (a lead not read) are NaN: only HGB takes them as they are
        return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                             *([StandardScaler()] if scale else []), model)

    models = {"hgb": HistGradientBoostingClassifier(), "logistic": filled(LogisticRegression(max_iter=2000)),
              "random_forest": filled(RandomForestClassifier(), scale=False), "svc": filled(SVC(probability=True))}
    results = {}
    for name, model in models.items():
        fit_started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
            proba = model.predict_proba(X_test)
        classes = [str(c) for c in model.classes_]
        results[f"defaults:{name}"] = {
            "answers": {p: dict(zip(classes, map(float, row))) for p, row in zip(test_paths, proba)},
            "wall_seconds": prepared + time.perf_counter() - fit_started,
            "model": f"{type(model[-1] if hasattr(model, 'steps') else model).__name__} (defaults) on "
                     f"{', '.join(spec.features)}"}
    return results


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

    stop_at = float(deadline)
    x_pages, y_pages, classes = _whole_pages(Path(data))
    x_test, _, _ = _whole_pages(Path(test))
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
    best = classifier.tuner.oracle.get_best_trials(1)[0].hyperparameters.values
    test_paths = _scanned_paths(Path(test))
    Path(out).write_text(json.dumps({
        "answers": {p: dict(zip(classes, map(float, row))) for p, row in zip(test_paths, proba)},
        "search_seconds": search_seconds,
        "trials": {str(status): sum(str(t.status) == str(status) for t in trials) for status in {t.status for t in trials}},
        "model": f"ak.ImageClassifier defaults; best trial: {best.get('image_block_1/block_type')} "
                 f"{ {k: v for k, v in best.items() if not k.startswith('image_block_1/')} }"}))
    return 0


def _plain_tpot_worker(data: str, test: str, budget: str, out: str) -> int:
    import warnings

    from automl.engines.tpot_worker import _import_tpot

    warnings.simplefilter("ignore")
    tpot = _import_tpot()
    X_train, y_train, classes = _whole_page_hog(Path(data))
    X_test, _, _ = _whole_page_hog(Path(test))
    estimator = tpot.TPOTClassifier(max_time_mins=float(budget) / 60.0, n_jobs=2, random_state=0, verbose=0)
    estimator.fit(X_train, y_train)
    proba = estimator.predict_proba(X_test)
    names = [str(c) for c in estimator.classes_]
    Path(out).write_text(json.dumps({
        "answers": {p: dict(zip(names, map(float, row))) for p, row in zip(_scanned_paths(Path(test)), proba)},
        "model": str(estimator.fitted_pipeline_)}))
    return 0


def _scanned_paths(root: Path) -> list[str]:
    """The pages of a folder, in the order the plain arms read them."""
    from features.dataset import scan

    return [str(p) for p in scan(root, progress=False).frame["path"]]


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


def print_table(results: dict, labels: dict, layouts: dict, classes: list[str]) -> dict:
    """Scores every arm's answers the same way; prints one row per arm and returns the scores."""
    import numpy as np

    scored = {}
    paths = sorted(labels)
    print("macro-F1 per slice: accuracy/macro-F1 [95% bootstrap interval of macro-F1] n=pages")
    for arm, result in results.items():
        if "error" in result:
            print(f"{arm:18s} failed: {result['error'].splitlines()[0] if result['error'] else ''}")
            continue
        answers = result["answers"]
        missing = [p for p in paths if p not in answers]
        kept = [p for p in paths if p in answers]
        proba = np.array([[answers[p].get(c, 0.0) for c in classes] for p in kept])
        scores = score_answers([labels[p] for p in kept], proba, classes, [layouts[p] for p in kept])
        scores["unanswered"] = len(missing)
        scored[arm] = {**scores, "wall_seconds": result.get("wall_seconds"), "model": result.get("model", ""),
                       "search": result.get("search", "")}
        print(format_row(arm, scores, result.get("wall_seconds")))
    for arm, s in scored.items():
        print(f"  {arm}: per-class F1 " + ", ".join(f"{c} {v:.3f}" for c, v in s.get("f1", {}).items())
              + (f"; {s['unanswered']} pages unanswered" if s["unanswered"] else ""))
        if s["model"]:
            print(f"  {arm} model: {s['model'][:300]}")
        for line in s["search"].splitlines():
            print(f"  {arm} {line.strip()}")
    return scored


def run_leave_site_out(folders: list[Path], experiment: str, rounds: int, hidden: int, seed: int):
    """Leave-one-site-out over the pages of ``folders`` together, sites approximated by page family."""
    import pandas as pd

    from automl.experiment import load_spec
    from automl.federated.head import HeadSpec
    from automl.federated.leave_site_out import leave_site_out
    from features.cache import default_cache_dir
    from features.dataset import scan
    from features.handcrafted import PageFeatures
    from features.sites import approximate_sites, pool_sites
    from features.survey import survey_pages

    scanned = [scan(folder, progress=False) for folder in folders]
    frame = pd.concat([m.frame for m in scanned], ignore_index=True)
    twins = frame[frame["sha256"].duplicated(keep=False)]
    if len(twins):
        raise SystemExit(f"{len(twins)} pages share their bytes across {', '.join(map(str, folders))}, e.g. "
                         f"{twins['path'].iloc[0]}; leave-one-site-out needs each page once")
    union = pool_sites({str(folder): manifest for folder, manifest in zip(folders, scanned)})
    paths = [str(p) for p in frame["path"]]
    survey = survey_pages(paths, n_jobs=-1, cache_dir=default_cache_dir(), progress=False)
    sites = approximate_sites(union, survey)
    features = PageFeatures(sets=tuple(load_spec(experiment).features), n_jobs=-1, cache_dir=default_cache_dir(),
                            progress=False)
    started = time.perf_counter()
    result = leave_site_out(sites, features=features, spec=HeadSpec(hidden=hidden), rounds=rounds, seed=seed,
                            approximated=True)
    print(f"pages: {', '.join(f'{f} ({len(m.frame)})' for f, m in zip(folders, scanned))}; "
          f"{len(sites)} sites APPROXIMATED by page layout and size (no hospital is named in the public dataset); "
          f"{time.perf_counter() - started:.0f} s")
    for name, manifest in sites.items():
        counts = ", ".join(f"{c} {n}" for c, n in manifest.class_counts().items() if n)
        print(f"  site {name}: {len(manifest.frame)} pages ({counts})"
              + "".join(f"; {w.split('; ', 1)[1]}" for w in manifest.warnings if "; " in w))
    print(result.table())
    print("Cite: Khan et al., Data in Brief 34 (2021) 106762, doi 10.17632/gwbz3fsgp8 (CC BY 4.0).")
    return result


def _default_folder(name: str) -> Path | None:
    folder = _SHARED / name
    return folder if folder.is_dir() else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--plain-tpot-worker":
        return _plain_tpot_worker(*argv[1:5])
    if argv and argv[0] == "--plain-autokeras-worker":
        return _plain_autokeras_worker(*argv[1:5])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_folder("ecg-real-train"),
                        help="training folder (<Class>/*.jpg); default ../shared/data/ecg-real-train")
    parser.add_argument("--test", type=Path, default=_default_folder("ecg-real-sample"),
                        help="separate test folder, same layout; default ../shared/data/ecg-real-sample")
    parser.add_argument("--budget", default="20m", help="each arm's budget, e.g. 20m")
    parser.add_argument("--experiment", default="default", help="SmartECG experiment spec")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--seeds", type=int, default=1, help="how many times the smartecg arm runs (seeds 0..N-1)")
    parser.add_argument("--first-seed", type=int, default=0, help="start the smartecg arm's seeds here (seeds S..S+N-1)")
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    parser.add_argument("--only-engines", default=None, help="the engines arm runs only these (comma-separated)")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="pretrained backbones (smartecg pretrain --out DIR): the deep engines also run from them")
    parser.add_argument("--leave-site-out", action="store_true",
                        help="leave-one-site-out over --data and --test together (sites approximated by page family)")
    parser.add_argument("--rounds", type=int, default=20, help="--leave-site-out: federated rounds (default 20)")
    parser.add_argument("--hidden", type=int, default=0, help="--leave-site-out: head's hidden units, 0 = linear")
    parser.add_argument("--seed", type=int, default=0, help="--leave-site-out: split and training seed")
    args = parser.parse_args(argv)
    if args.data is None or args.test is None:
        parser.error("give --data and --test (the shared real pages are not beside this checkout)")
    if args.leave_site_out:
        result = run_leave_site_out([args.data.resolve(), args.test.resolve()], args.experiment, args.rounds,
                                    args.hidden, args.seed)
        if args.out:
            args.out.write_text(json.dumps(result.to_dict(), indent=2, default=float))
        return 0
    budget = parse_duration(args.budget)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    from automl.experiment import load_spec
    from features.dataset import scan
    from features.survey import survey_pages

    data, test = args.data.resolve(), args.test.resolve()
    frame = scan(test, progress=False).frame
    test_paths = [str(p) for p in frame["path"]]
    labels = dict(zip(test_paths, frame["label"]))
    layouts = dict(zip(test_paths, survey_pages(test_paths, n_jobs=-1, progress=False)["layout"]))
    classes = sorted(set(labels.values()))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="smartecg-quality-") as tmp:
        def work(name: str) -> Path:
            folder = Path(tmp) / name.replace(":", "-")
            folder.mkdir()
            print(f"{name}: running with a {args.budget} budget...", flush=True)
            return folder

        for arm in arms:
            if arm == "smartecg":
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    name = "smartecg" if (args.seeds, seed) == (1, 0) else f"smartecg:seed{seed}"
                    results[name] = run_smartecg(data, test_paths, budget, args.experiment, work(name), seed=seed)
            elif arm == "engines":
                only = set(args.only_engines.split(",")) if args.only_engines else None
                for engine in load_spec(args.experiment).engines:
                    if only is not None and engine.name not in only:
                        continue
                    name = f"engine:{engine.name}"
                    results[name] = run_smartecg(data, test_paths, budget, args.experiment, work(name),
                                                 engines=engine.name)
                    if args.weights_dir and engine.name in DEEP_ENGINES:
                        name += "+pretrained"
                        results[name] = run_smartecg(data, test_paths, budget, args.experiment, work(name),
                                                     engines=engine.name, weights_dir=args.weights_dir.resolve())
            elif arm == "defaults":
                results.update(run_defaults(data, test_paths, args.experiment, work("defaults")))
            elif arm == "tpot":
                results["tpot"] = run_plain_tpot(data, test, budget, work("tpot"))
            else:
                results["autokeras"] = run_plain_autokeras(data, test, budget, work("autokeras"))
    print(f"train {data} ({len(scan(data, progress=False).frame)} pages), test {test} ({len(test_paths)} pages), "
          f"budget {args.budget} per arm")
    scored = print_table(results, labels, layouts, classes)
    if args.out:
        args.out.write_text(json.dumps(scored, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
