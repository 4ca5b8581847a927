"""Pages per second: ``features.imageio.load_image`` against a naive full-size PIL decode + resize.

Both methods read the same files at the same output size (aspect kept, longer side = size) in the
same process, interleaved pass by pass, after the OS file cache has been warmed, so the ratio
measures decoding work rather than disk speed or machine drift. It prints figures and asserts
nothing.

    python bench/io.py [--data DIR] [--sizes 1024,512] [--repeat 3] [--limit N]
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

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402

from automl.cli import positive_int  # noqa: E402
from features.dataset import CLASSES  # noqa: E402
from features.imageio import SUPPORTED_SUFFIXES as SUFFIXES  # noqa: E402
from features.imageio import load_image  # noqa: E402
from features.synthetic import generate_dataset  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "ecg-real-sample"
TARGET_RATIO = 2.0
SYNTHETIC_PAGES = 40


def collect(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def make_synthetic(out_dir: Path, pages: int = SYNTHETIC_PAGES, seed: int = 0) -> str:
    """Fill ``out_dir`` with about ``pages`` synthetic ECG pages; return how they were made."""
    generate_dataset(out_dir, per_class=max(1, pages // len(CLASSES)), seed=seed)
    return "features.synthetic.generate_dataset"


def target_size(width: int, height: int, max_side: int) -> tuple[int, int] | None:
    """Same rule as load_image(max_side=...): keep aspect, longer side = max_side, never enlarge."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return None
    return max(1, round(width * scale)), max(1, round(height * scale))


def naive(path: Path, max_side: int) -> np.ndarray:
    im = Image.open(path)
    grey = im.convert("L")
    size = target_size(*grey.size, max_side)
    if size is not None:
        grey = grey.resize(size)
    return np.asarray(grey, dtype=np.float32) / 255


def smartecg(path: Path, max_side: int) -> np.ndarray:
    return load_image(path, max_side=max_side)


METHODS = {"naive": naive, "smartecg": smartecg}


def time_pass(fn, files: list[Path], max_side: int) -> float:
    start = time.perf_counter()
    for path in files:
        fn(path, max_side)
    return time.perf_counter() - start


def warm_cache(files: list[Path]) -> int:
    total = 0
    for path in files:
        total += len(path.read_bytes())
    return total


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes must be a comma list of integers, got {text!r}")
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes must be positive integers, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"folder of page images, searched recursively (default: {DEFAULT_DATA} "
                             f"if present, else {SYNTHETIC_PAGES} synthetic pages)")
    parser.add_argument("--sizes", type=parse_sizes, default=[1024, 512],
                        help="target longer side(s), comma list (default: 1024,512)")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="passes per method; the best pass counts (default: 3)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use at most N files")
    args = parser.parse_args(argv)

    tmp = None
    if args.data is not None:
        if not args.data.is_dir():
            print(f"error: --data {args.data} is not a directory", file=sys.stderr)
            return 2
        folder, origin = args.data, "given"
    elif DEFAULT_DATA.is_dir():
        folder, origin = DEFAULT_DATA, "default"
    else:
        tmp = tempfile.TemporaryDirectory(prefix="smartecg-bench-io-")
        folder = Path(tmp.name)
        origin = "synthetic: " + make_synthetic(folder)

    try:
        files = collect(folder)
        if args.limit is not None:
            files = files[: args.limit]
        if not files:
            print(f"error: no {'/'.join(sorted(SUFFIXES))} files under {folder}", file=sys.stderr)
            return 2

        nbytes = warm_cache(files)
        print(f"python {platform.python_version()}, Pillow {PIL.__version__}, numpy {np.__version__}")
        print(f"data: {folder} ({origin}), {len(files)} files, {nbytes / 1e6:.1f} MB; "
              f"best of {args.repeat} interleaved passes, single process")

        # One untimed call each so lazy imports and plugin registration are not timed.
        for fn in METHODS.values():
            fn(files[0], args.sizes[0])

        results = []
        for size in args.sizes:
            best = {name: float("inf") for name in METHODS}
            order = list(METHODS)
            for i in range(args.repeat):
                # Alternate which method goes first so drift and cache state hit both alike.
                for name in (order if i % 2 == 0 else order[::-1]):
                    best[name] = min(best[name], time_pass(METHODS[name], files, size))
            naive_pps = len(files) / best["naive"]
            ours_pps = len(files) / best["smartecg"]
            results.append((size, naive_pps, ours_pps, ours_pps / naive_pps))

        print()
        print(f"{'size':>6} {'files':>6} {'naive p/s':>10} {'smartecg p/s':>13} {'ratio':>7}")
        for size, naive_pps, ours_pps, ratio in results:
            print(f"{size:>6} {len(files):>6} {naive_pps:>10.1f} {ours_pps:>13.1f} {ratio:>6.2f}x")
        print()
        for size, _, _, ratio in results:
            verdict = "met" if ratio >= TARGET_RATIO else "not met"
            print(f"target @ {size}: ratio {ratio:.2f} >= {TARGET_RATIO} -> {verdict}")
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
