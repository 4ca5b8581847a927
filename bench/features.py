"""Images per second: a naive scikit-image HOG pipeline against SmartECG's PageFeatures, cold and warm.

Four rows, on the same files, in one run, each with the same ``--jobs`` J (joblib, loky processes):

* naive: ``skimage.io.imread`` at full size, ``rgb2gray``, ``resize`` to 320x512 with
  anti-aliasing, ``hog`` (9 orientations, 16 px cells, 2x2 blocks): what one writes without SmartECG.
* decode-only: ``features.imageio.load_image(path, min_side=512)``, the reduced decode that page
  normalisation starts with, and nothing else: a ceiling for any pipeline built on it. Workers
  return only the array's shape, so this row is not charged for shipping pixels back.
* cold: ``PageFeatures(n_jobs=J, cache_dir=<fresh empty dir>).transform(paths)``, default sets.
* warm: the same transform again on the same cache dir, every row a cache hit.

naive and decode-only run through ``Parallel(n_jobs=J, batch_size="auto")`` over the paths, the
way PageFeatures runs its pages. Pool start-up is not timed for any row: before timing, each row
runs once, untimed, on two files, which starts the (shared, reused) loky workers and does each
row's imports in them. Every file is read once before timing, so all rows see a warm OS file
cache. Each row is timed ``--repeat`` times, rows interleaved within a pass, and the best pass
counts (cold gets a new empty cache dir every pass). It prints figures and asserts nothing.

    python bench/features.py [--data DIR | --per-class 20] [--jobs 2] [--repeat 3] [--limit N]
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# First, even when PYTHONPATH has it: bench/features.py beside this script would hide the package.
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
import skimage  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

from automl.cli import positive_int  # noqa: E402
from features.dataset import scan  # noqa: E402
from features.handcrafted import PageFeatures  # noqa: E402
from features.imageio import load_image  # noqa: E402
from features.pages import DEFAULT_SIZE  # noqa: E402
from features.synthetic import generate_dataset  # noqa: E402

DECODE_SIDE = max(DEFAULT_SIZE)  # the min_side normalise_page decodes at
TARGETS = (("cold", "naive", 3.0), ("warm", "naive", 50.0), ("cold", "decode-only", 0.5))


def naive_one(path: str) -> np.ndarray:
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.feature import hog
    from skimage.io import imread
    from skimage.transform import resize

    image = imread(path)
    if image.ndim == 3 and image.shape[2] == 4:
        image = rgba2rgb(image)
    grey = rgb2gray(image) if image.ndim == 3 else image
    small = resize(grey, DEFAULT_SIZE, anti_aliasing=True)
    return hog(small, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2)).astype(np.float32)


def decode_one(path: str) -> tuple[int, ...]:
    return load_image(path, min_side=DECODE_SIDE).shape


def run_parallel(fn, paths: list[str], jobs: int) -> list:
    return Parallel(n_jobs=jobs, batch_size="auto")(delayed(fn)(p) for p in paths)


def run_smartecg(paths: list[str], jobs: int, cache_dir: str) -> np.ndarray:
    return PageFeatures(n_jobs=jobs, cache_dir=cache_dir, progress=False).transform(paths)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder (class subfolders of images); default: synthetic pages")
    parser.add_argument("--per-class", type=positive_int, default=20,
                        help="synthetic pages per class when --data is not given (default: 20)")
    parser.add_argument("--jobs", type=positive_int, default=2, help="n_jobs for every row (default: 2)")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="timed passes per row; the best counts (default: 3)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use at most N files")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="smartecg-bench-features-") as tmp:
        tmp = Path(tmp)
        if args.data is not None:
            root, origin = args.data, "given"
        else:
            root = generate_dataset(tmp / "pages", args.per_class, seed=0, progress=False)
            origin = f"synthetic, generate_dataset(per_class={args.per_class}, seed=0)"
        frame = scan(root, progress=False).frame
        if args.limit is not None:
            frame = frame.iloc[: args.limit]
        paths = [str(p) for p in frame["path"]]
        if len(paths) < 2:  # PageFeatures runs fewer than 2 pages in-process, without the pool
            print(f"error: need at least 2 images under {root}, found {len(paths)}", file=sys.stderr)
            return 2
        nbytes = sum(len(Path(p).read_bytes()) for p in paths)  # warm the OS file cache for every row
        sizes = Counter(f"{w}x{h}" for w, h in zip(frame["width"], frame["height"]))
        sets = PageFeatures().sets
        J, n = args.jobs, len(paths)

        print(f"python {platform.python_version()}, scikit-image {skimage.__version__}, numpy {np.__version__}")
        print(f"data: {root} ({origin})")
        print(f"files: {n}, {nbytes / 1e6:.1f} MB; pixel sizes (WxH): "
              + ", ".join(f"{size} x{count}" for size, count in sizes.most_common()))
        print(f"n_jobs J = {J} for every row; SmartECG default sets {tuple(sets)}, size {DEFAULT_SIZE}")
        print(f"best of {args.repeat} interleaved passes; pool start-up and imports warmed up untimed")

        # Untimed warm-up: start the loky workers and do every row's imports in them.
        run_parallel(naive_one, paths[:2], J)
        run_parallel(decode_one, paths[:2], J)
        run_smartecg(paths[:2], J, str(tmp / "cache-warmup"))

        best = {name: float("inf") for name in ("naive", "decode-only", "cold", "warm")}
        for i in range(args.repeat):
            cache_dir = str(tmp / f"cache-{i}")  # fresh and empty
            best["naive"] = min(best["naive"], timed(run_parallel, naive_one, paths, J))
            best["decode-only"] = min(best["decode-only"], timed(run_parallel, decode_one, paths, J))
            best["cold"] = min(best["cold"], timed(run_smartecg, paths, J, cache_dir))
            best["warm"] = min(best["warm"], timed(run_smartecg, paths, J, cache_dir))

    ips = {name: n / seconds for name, seconds in best.items()}
    labels = {"naive": "naive", "decode-only": "decode-only ceiling",
              "cold": "SmartECG cold", "warm": "SmartECG warm"}
    print()
    print(f"{'row':<20} {'images/s':>10} {'ms/image':>10} {'x naive':>9} {'x decode':>9}")
    for name, label in labels.items():
        print(f"{label:<20} {ips[name]:>10.1f} {1000 / ips[name]:>10.2f} "
              f"{ips[name] / ips['naive']:>8.2f}x {ips[name] / ips['decode-only']:>8.2f}x")
    print("(ms/image is wall time per image with J workers, i.e. 1000 / images/s)")
    print()
    for row, reference, factor in TARGETS:
        ratio = ips[row] / ips[reference]
        verdict = "PASS" if ratio >= factor else "MISS"
        print(f"target {row} >= {factor:g}x {reference}: measured {ratio:.2f}x -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
