"""How much each hand-crafted feature set says about the class, and what it costs per page.

For every set in ``features.handcrafted.FEATURE_SETS`` alone (and all of them together), a
StandardScaler + LogisticRegression is trained on synthetic pages of one seed and scored on
pages of another seed. Each page is normalised once per page size the sets read; the time of
each set's own extraction is measured on that page (a fresh copy, so no set profits from
another's work), and each shared ``normalise_page`` step is shown on its own row. It prints a table and asserts nothing.

    python bench/feature_sets.py [--per-class 40] [--test-per-class 12] [--jobs 2]

With ``--real``, every set alone and the combinations in :data:`COMBINATIONS` are trained on
``../shared/data/ecg-real-train`` and scored on ``../shared/data/ecg-real-sample`` (balanced
HistGradientBoosting, one OpenMP thread; the slices and bootstrap intervals of bench/quality.py),
with each set's cost per page (extracted uncached; sets that read the same page size share
that page's reading, which each pays for here):

    python bench/feature_sets.py --real [--train DIR] [--test DIR] [--jobs 2] [--cache DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# First, even when PYTHONPATH has it: bench/features.py beside this script would hide the package.
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import copy  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from features.dataset import scan  # noqa: E402
from features.embed import Embedding, cached_backbone_file  # noqa: E402
from features.handcrafted import FEATURE_SETS, FeatureSet, PageFeatures  # noqa: E402
from features.pretrained import BackboneUnavailable  # noqa: E402
from features.extract import read_page  # noqa: E402
from features.imageio import read_file  # noqa: E402
from features.pages import DEFAULT_SIZE  # noqa: E402
from features.source_traces import SOURCE_RESOLUTION  # noqa: E402
from features.synthetic import LayoutMix, generate_dataset  # noqa: E402


def bench_sets() -> dict[str, FeatureSet]:
    """Every registered set as the transformer computes it: ``embed`` with the pretrained backbone
    in the cache, or left out (with a line) where none has been made."""
    sets = dict(FEATURE_SETS)
    try:
        embedding = Embedding(cached_backbone_file())
        sets["embed"] = FeatureSet(embedding.version, embedding)
    except BackboneUnavailable as exc:
        del sets["embed"]
        print(f"embed left out: {exc}", flush=True)
    return sets


SETS = bench_sets()


def page_features(path: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every set's vector for one page, and the seconds each step took."""
    pages, seconds = {}, {}
    for size in sorted({spec.size or DEFAULT_SIZE for spec in SETS.values()}):
        start = time.perf_counter()
        pages[size] = read_page(read_file(path), size)  # normalised, or read at the source's resolution
        seconds[normalise_step(size)] = time.perf_counter() - start
    vectors = {}
    for name, spec in SETS.items():
        fresh = copy.copy(pages[spec.size or DEFAULT_SIZE])  # hog_leads and lbp must each pay for their tiles
        start = time.perf_counter()
        vectors[name] = spec.function(fresh)
        seconds[name] = time.perf_counter() - start
    return vectors, seconds


def normalise_step(size: tuple[int, int]) -> str:
    if size == SOURCE_RESOLUTION:
        return "read_source_page"
    return f"normalise_page {size[0]}x{size[1]}"


def extract(root: Path, jobs: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """Per set an (n, d) matrix, the labels, and mean ms/page per step."""
    frame = scan(root, progress=False).frame
    results = Parallel(n_jobs=jobs)(delayed(page_features)(Path(p)) for p in frame["path"])
    matrices = {name: np.stack([vectors[name] for vectors, _ in results]) for name in SETS}
    ms = {step: 1000 * float(np.mean([seconds[step] for _, seconds in results])) for step in results[0][1]}
    return matrices, frame["label"].to_numpy(), ms


def score(train: np.ndarray, y_train, test: np.ndarray, y_test) -> tuple[float, float]:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    predicted = model.fit(train, y_train).predict(test)
    return accuracy_score(y_test, predicted), f1_score(y_test, predicted, average="macro")


def combined(matrices: dict[str, np.ndarray], names) -> np.ndarray:
    return np.hstack([matrices[name] for name in names])


SHARED = REPO_ROOT.parent / "shared" / "data"
# Candidates for the default experiment's sets, beside every set alone.
COMBINATIONS = (("signals", "trace"), ("source_signals", "trace"), ("signals", "trace", "rhythm"),
                ("source_signals", "trace", "rhythm"),
                ("signals", "source_signals", "trace", "rhythm"), ("source_signals", "rhythm"),
                ("source_signals", "median_beat"), ("source_signals", "trace", "median_beat"),
                ("source_signals", "trace", "rhythm", "median_beat"),
                ("embed", "trace"), ("signals", "trace", "embed"), ("source_signals", "trace", "embed"))


def real_pages(train: Path, test: Path, jobs: int, cache: Path | None, sets: tuple[str, ...]) -> None:
    """Every set and combination on real pages: train on ``train``, score on ``test``, per slice."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    from _scoring import format_row, score_answers
    from features.survey import survey_pages

    train_frame, test_frame = scan(train, progress=False).frame, scan(test, progress=False).frame
    train_paths, test_paths = [str(p) for p in train_frame["path"]], [str(p) for p in test_frame["path"]]
    y_train, y_test = train_frame["label"].to_numpy(dtype=object), test_frame["label"].to_numpy(dtype=object)
    layouts = survey_pages(test_paths, n_jobs=jobs, progress=False)["layout"].tolist()
    matrices, ms = {}, {}
    for name in sets:
        started = time.perf_counter()
        features = PageFeatures(sets=(name,), n_jobs=jobs, cache_dir=cache, progress=False)
        matrices[name] = (features.transform(train_paths), features.transform(test_paths))
        ms[name] = 1000 * (time.perf_counter() - started) * jobs / (len(train_paths) + len(test_paths))
    print(f"train {len(train_paths)} pages ({train}), test {len(test_paths)} pages ({test}); "
          f"balanced HistGradientBoosting; ms/page = core-ms per page (an empty --cache fills: still a cost)", flush=True)
    combinations = [names for names in COMBINATIONS if set(names) <= set(sets)]
    for names in [(name,) for name in sets] + combinations:
        X_train = np.hstack([matrices[n][0] for n in names])
        X_test = np.hstack([matrices[n][1] for n in names])
        model = HistGradientBoostingClassifier(class_weight="balanced", random_state=0)
        with threadpool_limits(1):
            # Chosen on the training pages (cross-validated), confirmed on the test pages: 94 test
            # pages are too few to pick among near-equal sets by.
            folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=0)
            cv = cross_val_score(model, X_train, y_train, cv=folds, scoring="f1_macro", n_jobs=jobs)
            proba = model.fit(X_train, y_train).predict_proba(X_test)
        scores = score_answers(y_test, proba, [str(c) for c in model.classes_], layouts)
        label = "+".join(names)
        print(f"{label:<40} train CV macro-F1 {cv.mean():.3f} +- {cv.std():.3f} | "
              + format_row("test", scores, None) + f" | {X_train.shape[1]} dims | "
              f"{sum(ms[n] for n in names):.0f} ms/page", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40, help="training pages per class (seed 1)")
    parser.add_argument("--test-per-class", type=int, default=12, help="test pages per class (seed 2)")
    parser.add_argument("--jobs", type=int, default=1, help="pages extracted in parallel (timings are per page)")
    parser.add_argument("--six-by-two", type=float, default=0.0, metavar="SHARE",
                        help="share of 6x2 pages in both sets (40%% of them gridless), e.g. 0.3 as in the demo")
    parser.add_argument("--real", action="store_true", help="real pages: train on --train, score on --test")
    parser.add_argument("--train", type=Path, default=SHARED / "ecg-real-train")
    parser.add_argument("--test", type=Path, default=SHARED / "ecg-real-sample")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache (a filled one makes ms/page no cost)")
    parser.add_argument("--sets", default="trace,signals,source_signals,rhythm,median_beat",
                        help="sets to score with --real (HOG's thousands of columns take HGB an hour on 2 cores)")
    args = parser.parse_args(argv)
    if args.real:
        for folder in (args.train, args.test):
            if not folder.is_dir():
                parser.error(f"{folder} is not a folder of class subfolders; give --train and --test")
        real_pages(args.train, args.test, max(1, args.jobs), args.cache, tuple(args.sets.split(",")))
        return

    with tempfile.TemporaryDirectory() as tmp:
        layouts = LayoutMix(six_by_two=args.six_by_two, gridless=0.4)
        train_root = generate_dataset(Path(tmp) / "train", args.per_class, seed=1, layouts=layouts, progress=False)
        test_root = generate_dataset(Path(tmp) / "test", args.test_per_class, seed=2, layouts=layouts, progress=False)
        train, y_train, ms = extract(train_root, args.jobs)
        test, y_test, _ = extract(test_root, args.jobs)

    print(f"train {len(y_train)} pages (seed 1), test {len(y_test)} pages (seed 2); "
          f"chance accuracy {1 / len(set(y_train)):.2f}")
    print(f"{'feature set':<14} {'dims':>6} {'accuracy':>9} {'macro-F1':>9} {'ms/page':>8}")
    for name in SETS:
        accuracy, f1 = score(train[name], y_train, test[name], y_test)
        print(f"{name:<14} {train[name].shape[1]:>6} {accuracy:>9.3f} {f1:>9.3f} {ms[name]:>8.2f}")
    for label, names in (("default", PageFeatures().sets), ("combined", ("trace", "signals")),
                         ("all sets", tuple(SETS))):
        accuracy, f1 = score(combined(train, names), y_train, combined(test, names), y_test)
        total = sum(ms[name] for name in names)
        spelled = "" if label == "all sets" else f"  ({' + '.join(names)})"
        print(f"{label:<14} {combined(train, names).shape[1]:>6} {accuracy:>9.3f} {f1:>9.3f} {total:>8.2f}{spelled}")
    for size in sorted({spec.size or DEFAULT_SIZE for spec in SETS.values()}):
        users = [name for name, spec in SETS.items() if (spec.size or DEFAULT_SIZE) == size]
        print(f"{'(' + normalise_step(size) + ')':<40} {ms[normalise_step(size)]:>8.2f}  shared by {', '.join(users)}")


if __name__ == "__main__":
    main()
