"""How faithfully the leads are read: SNR and Pearson r against the generator's true signals,
and the heart rate against the rate real devices printed.

    python bench/traces.py [--seeds 2] [--levels clean,mild,strong] [--real]

Synthetic pages of every class, both layouts, with and without grid, at each scan-artefact
level of ``features.synthetic.SCAN_LEVELS`` (JPEG-encoded at the level's quality): every lead
read at the source's resolution (``features.source_traces``) is compared with the true signal as
the PhysioNet Challenge 2024 does (``features.fidelity``: best shift within 0.1 s and vertical
offset; SNR in dB against the raw signal, noise and all). Printed: median and 10th-percentile
SNR and r per layout and level, the median SNR per lead, and, for comparison, the same at the
old working size (normalise_page at 640x1024, ``features.traces.lead_signals``).

``--real``: the rate read off the rhythm strip (``features.rhythm``) and the page-wide beats
(``features.measures``) against the rate the device printed in the footer of each real sample
page (tests/data/real_sample_device_rates.csv), mean absolute error per print layout.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from features.fidelity import lead_fidelity  # noqa: E402
from features.pages import LEADS, RHYTHM, normalise_page  # noqa: E402
from features.source_traces import source_lead_signals  # noqa: E402
from features.synthetic import CLASSES, FS, SCAN_LEVELS, make_page  # noqa: E402
from features.traces import SIGNAL_SIZE, lead_signals  # noqa: E402

RATES = REPO_ROOT / "tests" / "data" / "real_sample_device_rates.csv"
REAL_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "ecg-real-sample"


def page_fidelity(level: str, seeds: int, reader) -> dict[str, list[tuple[str, float, float]]]:
    """Per layout (and grid), (lead, SNR, r) of every lead of every page."""
    out: dict[str, list] = {}
    for seed in range(seeds):
        for label in CLASSES:
            for layout, grid in (("3x4", True), ("6x2", True), ("6x2", False)):
                truth = make_page(label, seed, layout=layout, grid=grid, scan=SCAN_LEVELS[level])
                signals = reader(truth.jpeg_bytes())
                key = f"{layout}{'' if grid else ' no grid'}"
                for lead, mv in signals.mv.items():
                    f = lead_fidelity(mv, signals.start_seconds[lead], signals.samples_per_second,
                                      truth.signals["II" if lead == RHYTHM else lead], FS)
                    out.setdefault(key, []).append((lead, f.snr_db, f.r))
    return out


def print_fidelity(levels: list[str], seeds: int) -> None:
    readers = {"source": source_lead_signals,
               "640x1024": lambda image: lead_signals(normalise_page(image, size=SIGNAL_SIZE))}
    print(f"{'reader':<9} {'level':<7} {'layout':<12} {'leads':>5} {'SNR med':>8} {'SNR p10':>8} "
          f"{'r med':>6} {'r p10':>6} {'s/page':>7}")
    for level in levels:
        for reader_name, reader in readers.items():
            started = time.perf_counter()
            results = page_fidelity(level, seeds, reader)
            per_page = (time.perf_counter() - started) / (seeds * len(CLASSES) * 3)
            for key, rows in results.items():
                snr, r = np.array([x[1] for x in rows]), np.array([x[2] for x in rows])
                print(f"{reader_name:<9} {level:<7} {key:<12} {len(rows):>5} {np.median(snr):>8.1f} "
                      f"{np.percentile(snr, 10):>8.1f} {np.median(r):>6.3f} {np.percentile(r, 10):>6.3f} {per_page:>7.2f}")
            if reader_name == "source":
                every = [x for rows in results.values() for x in rows]
                per_lead = {lead: np.median([x[1] for x in every if x[0] == lead]) for lead in (*LEADS, RHYTHM)}
                print("  median SNR per lead: " + ", ".join(f"{k} {v:.1f}" for k, v in per_lead.items()))


def print_real_rates(root: Path) -> None:
    import warnings

    from features.measures import measures_of
    from features.rhythm import rhythm_measures

    rows = [row for row in csv.DictReader(line for line in open(RATES) if not line.startswith("#"))
            if row["lead_off"] == "0"]
    errors: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        path = root / row["page"]
        if not path.exists():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signals = source_lead_signals(path)
            strip = float(rhythm_measures(signals)[0])
            page = float(measures_of(signals)[-2])
        device = float(row["device_rate_bpm"])
        for name, rate in (("rhythm strip (features.rhythm)", strip), ("page beats (features.measures)", page)):
            errors.setdefault(row["print"], {}).setdefault(name, []).append(abs(rate - device))
    print(f"heart rate against the device's printed rate, {root} ({RATES.name}):")
    for layout, by_reader in sorted(errors.items()):
        for name, values in by_reader.items():
            values = np.array(values)
            print(f"  {layout:<10} {name:<32} n={len(values):>3}  MAE {values.mean():5.1f} bpm  "
                  f"median {np.median(values):4.1f}  within 3 bpm {np.mean(values <= 3):.0%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="pages per class, layout and level")
    parser.add_argument("--levels", default=",".join(SCAN_LEVELS), help="scan-artefact levels")
    parser.add_argument("--real", action="store_true", help="also the heart rate on the real sample pages")
    parser.add_argument("--real-sample", type=Path, default=REAL_SAMPLE)
    args = parser.parse_args(argv)
    print_fidelity(args.levels.split(","), args.seeds)
    if args.real:
        if not args.real_sample.is_dir():
            parser.error(f"{args.real_sample} is not there; give --real-sample")
        print_real_rates(args.real_sample)


if __name__ == "__main__":
    main()
