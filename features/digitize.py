"""A page's 12 leads (and rhythm strip) as a recording: millivolts at a chosen sampling rate over
the page's 10 s, written as a WFDB record or a CSV, with the reading drawn back over the page.

Each lead is placed at its time: a 3x4 panel holds 2.5 s of its lead, a 6x2 panel 5 s, the
rhythm strip the whole 10 s; samples the page does not show are NaN (WFDB's missing value), as
are the first 10% of every panel, where the lead's name is printed over the trace. A page whose
lead rows cannot be found raises :class:`~features.source_traces.LayoutNotRecognised`: it is
never read with a guessed layout.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from features.imageio import ImageSource, load_image
from features.pages import LEADS, RHYTHM
from features.source_traces import SourcePage, read_source_page
from features.traces import SECONDS_ACROSS

__all__ = ["Recording", "csv_to", "digitize", "draw_reading", "write_csv", "write_wfdb"]

ADC_GAIN = 1000  # units per mV in the .dat file: 1 uV steps, +-32 mV in 16 bits


@dataclass(frozen=True)
class Recording:
    """``signals``: channel name -> float32 mV at ``fs`` Hz over 10 s, NaN where the page shows nothing."""

    signals: dict[str, np.ndarray]
    fs: int
    page: SourcePage

    @property
    def channels(self) -> list[str]:
        return list(self.signals)

    @property
    def calibration(self) -> str:
        signals = self.page.signals
        how = "the page's 1 mV pulse" if signals.calibrated else "no pulse found: the standard 10 mm/mV assumed"
        return f"{signals.px_per_mv:.1f} px/mV ({how})"

    def matrix(self) -> np.ndarray:
        """(samples, channels) float64, the channels in :attr:`channels` order."""
        return np.column_stack([self.signals[name].astype(np.float64) for name in self.channels])


def digitize(source: ImageSource, fs: int = 500) -> Recording:
    """Read ``source`` at its resolution and resample every lead to ``fs`` Hz on the 10 s of the page."""
    if fs < 50 or fs > 10_000:
        raise ValueError(f"a sampling rate of {fs} Hz is outside 50-10000 Hz")
    page = read_source_page(source)
    read = page.signals
    times = np.arange(int(round(SECONDS_ACROSS * fs))) / fs
    signals = {}
    for name in [lead for lead in LEADS if lead in read.mv] + ([RHYTHM] if RHYTHM in read.mv else []):
        values = read.mv[name].astype(np.float64)
        at = read.start_seconds[name] + (np.arange(len(values)) + 0.5) / read.samples_per_second
        inside = (times >= at[0]) & (times <= at[-1])
        out = np.full(len(times), np.nan, dtype=np.float32)
        out[inside] = np.interp(times[inside], at, values)
        signals[name] = out
    return Recording(signals, fs, page)


def write_wfdb(recording: Recording, out_dir: str | Path, name: str) -> list[Path]:
    """``name.hea`` and ``name.dat`` (16-bit, mV) in ``out_dir``: what ``wfdb.rdrecord`` reads back."""
    import wfdb

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = recording.page
    comments = [f"layout: {page.layout}{' with rhythm strip' if page.geometry.rhythm else ''}",
                f"calibration: {recording.calibration}",
                "digitised by SmartECG from a page image; NaN where the page shows no trace"]
    wfdb.wrsamp(name, fs=recording.fs, units=["mV"] * len(recording.channels), sig_name=recording.channels,
                p_signal=recording.matrix(), fmt=["16"] * len(recording.channels),
                adc_gain=[ADC_GAIN] * len(recording.channels), baseline=[0] * len(recording.channels), comments=comments,
                write_dir=str(out_dir))
    return [out_dir / f"{name}.hea", out_dir / f"{name}.dat"]


def write_csv(recording: Recording, path: str | Path) -> Path:
    """:func:`csv_to` a file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv_to(recording, handle)
    return path


def csv_to(recording: Recording, handle: TextIO) -> None:
    """One row per sample: ``time_s`` then one column per channel in mV (empty where not shown)."""
    writer = csv.writer(handle)
    writer.writerow(["time_s"] + [f"{name}_mV" for name in recording.channels])
    for i, row in enumerate(recording.matrix()):
        writer.writerow([f"{i / recording.fs:.4f}"] + ["" if np.isnan(v) else f"{v:.4f}" for v in row])


def draw_reading(recording: Recording, source: ImageSource, path: str | Path, max_side: int = 2400) -> Path:
    """The page with every lead as read drawn over it in red, so a person can check it at a glance."""
    from PIL import Image, ImageDraw

    page = recording.page
    image = Image.fromarray((load_image(source, mode="RGB") * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    read = page.signals
    for name, values in read.mv.items():
        x = page.lead_boxes[name][0] + np.arange(len(values)) + 0.5
        # lead_boxes start where the panel is read, on the frame's columns (one per source pixel)
        y = page.baselines[name] - values.astype(np.float64) * read.px_per_mv
        points = page.geometry.to_source(np.column_stack([x, y]))
        draw.line([tuple(p) for p in points.tolist()], fill=(220, 0, 0), width=2)
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
