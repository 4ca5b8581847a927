"""Pearson r between traces.lead_signals and the generator's signals, box-averaged per column.

    python bench/traces.py [HEIGHT WIDTH] [SEEDS]    (default: traces.SIGNAL_SIZE, 4 seeds)

Pages of every class and both layouts; prints the median r per lead, the overall median and
minimum, and the calibration: share of pages with a pulse found, and the scale's error.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.pages import LEADS, normalise_page  # noqa: E402
from features.synthetic import _PX_PER_MV, _ROW_PITCH, _ROW_PITCH_6X2, CLASSES, FS, make_page  # noqa: E402
from features.traces import SIGNAL_SIZE, lead_signals  # noqa: E402


def truth_per_column(signal: np.ndarray, start: float, n: int, samples_per_second: float) -> np.ndarray:
    """The generator's signal averaged over each page column's slice of time."""
    edges = ((start + np.arange(n + 1) / samples_per_second) * FS).astype(int).clip(0, len(signal))
    return np.array([signal[a:max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:])])


def main() -> None:
    size = tuple(int(v) for v in sys.argv[1:3]) if len(sys.argv) > 2 else SIGNAL_SIZE
    seeds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    rs = {lead: [] for lead in LEADS}
    scale_errors, calibrated = [], []
    for seed in range(seeds):
        for label in CLASSES:
            for layout in ("3x4", "6x2"):
                truth = make_page(label, seed, layout=layout)
                page = normalise_page(truth.image, size=size)
                if page.layout != layout:
                    print("layout miss", seed, label, layout)
                    continue
                signals = lead_signals(page)
                rows = 4 if layout == "3x4" else 6
                pitch = _ROW_PITCH if layout == "3x4" else _ROW_PITCH_6X2
                true_px_per_mv = _PX_PER_MV / pitch * size[0] / rows
                scale_errors.append(signals.px_per_mv / true_px_per_mv - 1)
                calibrated.append(signals.calibrated)
                for lead in LEADS:
                    mv = signals.mv[lead]
                    seen = truth_per_column(truth.signals[lead], signals.start_seconds[lead], len(mv),
                                            signals.samples_per_second)
                    rs[lead].append(np.corrcoef(mv, seen)[0, 1])
    print("size", size, "pages", len(calibrated))
    print({lead: round(float(np.median(v)), 3) for lead, v in rs.items()})
    every = [x for v in rs.values() for x in v]
    print("overall median", round(float(np.median(every)), 3), "min", round(float(np.min(every)), 3))
    errors = np.array(scale_errors)
    flags = np.array(calibrated)
    print(f"calibrated {flags.mean():.3f}; px/mV error (pulse) median {np.median(errors[flags]):+.3f} "
          f"range {errors[flags].min():+.3f}..{errors[flags].max():+.3f}"
          + (f"; fallback {errors[~flags].round(3).tolist()}" if (~flags).any() else ""))


if __name__ == "__main__":
    main()
