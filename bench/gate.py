"""What the page gate makes of ECG pages in every orientation and of images that are not ECG pages.

    python bench/gate.py [--real] [--per-class 8]

The gate (``features.gate.PageGate``) is fitted on training pages and asked about other pages, each
in all eight orientations (upright, three turns, four mirror images), and about the images of
``features.not_ecg`` in all eight too. Printed per orientation: pages read, turned and found the
right way round, turned the wrong way, refused; per kind of non-ECG image: refused of 8; the
novelty of the test pages (1.0 = the training pages' 99th percentile); fit and check times.

Default: generated pages of every layout (``--per-class`` for training, a quarter as many to check,
other seeds). ``--real``: fitted on ../shared/data/ecg-real-train, checked on ecg-real-sample.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from features.gate import _TURNS, ORIENTATIONS, READ, REFUSED, TURNED, PageGate  # noqa: E402
from features.imageio import load_image  # noqa: E402
from features.not_ecg import not_ecg_pages  # noqa: E402

REAL = REPO_ROOT.parent / "shared" / "data"


def pages(real: bool, per_class: int) -> tuple[list[str], list[str], str]:
    if real:
        train, test = REAL / "ecg-real-train", REAL / "ecg-real-sample"
        if not train.is_dir() or not test.is_dir():
            sys.exit(f"bench/gate.py: --real needs {train} and {test}")
        return sorted(map(str, train.glob("*/*.jpg"))), sorted(map(str, test.glob("*/*.jpg"))), "real (Khan et al.)"
    from features.synthetic import LayoutMix, generate_dataset

    folder = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    mix = LayoutMix(six_by_two=0.4, gridless=0.5)
    train = generate_dataset(folder / "train", per_class, seed=101, layouts=mix, progress=False)
    test = generate_dataset(folder / "test", max(1, per_class // 4), seed=102, layouts=mix, progress=False)
    return sorted(map(str, train.glob("*/*.jpg"))), sorted(map(str, test.glob("*/*.jpg"))), "generated"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--per-class", type=int, default=8)
    args = parser.parse_args()
    train, test, kind = pages(args.real, args.per_class)

    started = time.perf_counter()
    gate = PageGate().fit(train)
    fit_seconds = time.perf_counter() - started
    print(f"{kind} pages: gate fitted on {gate.n_pages_} in {fit_seconds:.1f} s; checking {len(test)} pages x 8 orientations")
    print(f"{'orientation':<11} {'read':>5} {'turned right':>13} {'turned wrong':>13} {'refused':>8} {'unlike':>7}")
    novelty, seconds, checked = [], 0.0, 0
    for orientation in ORIENTATIONS:
        counts = dict.fromkeys(("read", "right", "wrong", "refused", "unlike"), 0)
        for path in test:
            image = np.ascontiguousarray(_TURNS[orientation][0](load_image(path, mode="RGB")))
            started = time.perf_counter()
            check = gate.check(image)
            seconds += time.perf_counter() - started
            checked += 1
            if orientation == "upright":
                novelty.append(check.novelty)
            counts["unlike"] += check.unlike_training and check.status != REFUSED
            if check.status == REFUSED:
                counts["refused"] += 1
            elif check.orientation == orientation:
                counts["read" if check.status == READ else "right"] += check.status in (READ, TURNED)
            else:
                counts["wrong"] += 1
        print(f"{orientation:<11} {counts['read']:>5} {counts['right']:>13} {counts['wrong']:>13} "
              f"{counts['refused']:>8} {counts['unlike']:>7}")
    quantiles = np.quantile(novelty, [0.5, 0.9, 1.0])
    print(f"novelty of the upright test pages: median {quantiles[0]:.2f}, p90 {quantiles[1]:.2f}, max {quantiles[2]:.2f}")
    print(f"check: {1000 * seconds / checked:.0f} ms a page (array in, full-resolution page out when turned)")
    print(f"{'not an ECG page':<16} {'refused of 8':>12} {'lowest novelty':>15}  first reason")
    for name, image in not_ecg_pages().items():
        checks = [gate.check(np.ascontiguousarray(_TURNS[o][0](image))) for o in ORIENTATIONS]
        refused = [c for c in checks if c.status == REFUSED]
        print(f"{name:<16} {len(refused):>12} {min(c.novelty for c in checks):>15.2f}  "
              f"{(refused or checks)[0].reason[:70]}")


if __name__ == "__main__":
    main()
