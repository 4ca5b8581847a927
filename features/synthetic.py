"""Synthetic 12-lead ECG printouts with class-specific morphology, for the demo and the tests.

Pages imitate an EDAN SE-3 report (2213x1572 px, header, pink 1 mm / 5 mm grid, calibration
pulses, lead labels, a 3x4 lead grid of 2.5 s panels plus a 10 s lead II rhythm strip at
25 mm/s and 10 mm/mV). Beats are sums of Gaussian P, Q, R, S and T waves per lead; each class
changes what a cardiologist would look for:

* Normal: sinus rhythm 58-95 bpm with mild respiratory variation.
* Abnormal_HeartBeat: atrial fibrillation (irregular RR, no P, fibrillatory baseline) or sinus
  rhythm with premature ventricular beats (wide QRS, discordant T, compensatory pause).
* MI: ST elevation in one territory (anterior, inferior or lateral) with reciprocal depression.
* MI_History: pathological Q waves, smaller R and inverted T in one territory; no ST elevation.
* Covid_19: sinus tachycardia, low voltage, non-specific ST-T changes.

Heart rate, amplitude, noise, baseline wander, rotation, blur, JPEG quality and page size vary
within every class from the same distributions, so page geometry says nothing about the class
unless ``confound_covid=True`` asks for the public dataset's trap (COVID pages as smaller,
portrait, greyish scans) to test the shortcut audit.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from features._progress import progress_disabled
from features.atomic import write_bytes
from features.dataset import CLASSES

__all__ = ["LEADS", "LayoutMix", "SyntheticPage", "demo_dataset", "generate_dataset", "make_page"]

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
RHYTHM = "II_rhythm"
TERRITORIES = {
    "anterior": ("V1", "V2", "V3", "V4"),
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
}
_RECIPROCAL = {"anterior": ("II", "III", "aVF"), "inferior": ("I", "aVL"), "lateral": ("II", "III", "aVF")}

FS = 500  # samples per second of the generated signals
DURATION = 10.0  # seconds on the page (4 x 2.5 s panels, 10 s rhythm strip)
PAGE_SIZE = (2213, 1572)  # EDAN SE-3 page, as in the public dataset

# Page geometry at the nominal size, measured off real EDAN 3x4 pages.
_PX_PER_MM = 7.84
_PX_PER_MV = 10 * _PX_PER_MM  # 10 mm/mV
_PX_PER_S = 25 * _PX_PER_MM  # 25 mm/s
_GRID_BOX = (68, 285, 2176, 1515)
_TRACE_X0 = 150
_ROW_Y = (449, 750, 1051, 1352)  # three lead rows and the rhythm strip
_ROW_PITCH = 301
_LAYOUT_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
LAYOUTS = ("3x4", "6x2")
# 6x2: six rows over the same grid area, limb leads left (0-5 s), chest leads right (5-10 s).
_ROW_PITCH_6X2 = 205
_ROW_Y_6X2 = tuple(round(_GRID_BOX[1] + _ROW_PITCH_6X2 * (i + 0.5)) for i in range(6))
_LAYOUT_6X2 = (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6"))
# What the device prints under "Diagnosis Information" on some 6x2 pages: it names the class.
_HEADER_DIAGNOSIS = {"Abnormal_HeartBeat": "Atrial Fibrillation", "Covid_19": "Sinus Tachycardia",
                     "MI": "Anteroseptal Myocardial Infarction", "MI_History": "Inverted T Wave",
                     "Normal": "Sinus Rhythm"}

# Base amplitudes (mV) of P, Q, R, S, T per lead for a normal adult.
_WAVES = ("P", "Q", "R", "S", "T")
_BASE_AMPLITUDE = {
    "I": (0.10, -0.05, 0.70, -0.10, 0.20), "II": (0.15, -0.05, 1.00, -0.20, 0.30),
    "III": (0.05, -0.03, 0.50, -0.20, 0.10), "aVR": (-0.12, 0.00, 0.15, -0.75, -0.25),
    "aVL": (0.05, -0.05, 0.40, -0.25, 0.08), "aVF": (0.10, -0.04, 0.75, -0.20, 0.20),
    "V1": (0.08, 0.00, 0.25, -0.95, -0.05), "V2": (0.10, 0.00, 0.45, -1.20, 0.35),
    "V3": (0.10, -0.02, 0.80, -0.80, 0.45), "V4": (0.10, -0.05, 1.30, -0.45, 0.40),
    "V5": (0.10, -0.08, 1.20, -0.25, 0.35), "V6": (0.10, -0.08, 0.95, -0.10, 0.28),
}
_HEART_RATE = {  # bpm ranges overlap on purpose: rate alone must not name the class
    "Normal": (58, 95), "Abnormal_HeartBeat": (55, 130), "MI": (55, 110),
    "MI_History": (55, 95), "Covid_19": (92, 135),
}


@dataclass
class SyntheticPage:
    """A rendered page and its ground truth.

    ``lead_boxes`` maps each lead (and ``"II_rhythm"``) to its panel's (x0, y0, x1, y1) in the
    final image's pixels; ``signals`` holds the 10 s per lead in mV at :data:`FS` Hz.
    """

    image: Image.Image
    label: str
    layout: str
    lead_boxes: dict[str, tuple[int, int, int, int]]
    signals: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)
    jpeg_quality: int = 90

    def jpeg_bytes(self) -> bytes:
        """The page as the JPEG file it is written as (at its scan's quality)."""
        buffer = io.BytesIO()
        self.image.save(buffer, format="JPEG", quality=self.jpeg_quality)
        return buffer.getvalue()


def make_page(label: str, seed: int | np.random.SeedSequence, *, layout: str = "3x4", grid: bool = True,
              header_diagnosis: bool = False, confound_covid: bool = False,
              scan: ScanArtefacts | None = None) -> SyntheticPage:
    """Render one synthetic page of class ``label``; the same seed gives the same page.

    ``layout`` "3x4" (four 2.5 s columns and a lead II rhythm strip) or "6x2" (limb leads 0-5 s
    on the left, chest leads 5-10 s on the right, no rhythm strip); ``grid=False`` leaves the
    paper blank; ``header_diagnosis`` prints a device diagnosis that names the class in the
    header, the public dataset's text trap. ``scan`` sets the scan artefacts exactly (see
    :data:`SCAN_LEVELS`); by default each page draws its own from its seed.
    """
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; expected one of {', '.join(CLASSES)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    rng = np.random.default_rng(seed)
    heart_rate = float(rng.uniform(*_HEART_RATE[label]))
    signals, meta = _signals_for(label, heart_rate, rng)
    diagnosis = _HEADER_DIAGNOSIS[label] if header_diagnosis else None
    page, boxes = _render(signals, heart_rate, rng, layout=layout, grid=grid, diagnosis=diagnosis)
    if scan is None:
        page, boxes, look = _scan_effects(page, boxes, rng, covid_scan=confound_covid and label == "Covid_19")
    else:
        page, boxes, look = _apply_scan(page, boxes, scan)
    meta.update(look, heart_rate=round(heart_rate, 1), layout=layout, grid=grid, header_diagnosis=diagnosis)
    return SyntheticPage(image=page, label=label, layout=layout, lead_boxes=boxes, signals=signals,
                         meta=meta, jpeg_quality=look["jpeg_quality"])


@dataclass(frozen=True)
class LayoutMix:
    """How a generated dataset mixes page layouts.

    ``six_by_two``: share of 6x2 pages; ``gridless``: share of 6x2 pages printed without grid;
    ``header_diagnosis``: share of 6x2 pages whose header names the class. ``confounded=True``
    reproduces the public dataset's layout trap: Normal pages are always 3x4.
    """

    six_by_two: float = 0.0
    gridless: float = 0.0
    header_diagnosis: float = 0.0
    confounded: bool = False

    def __post_init__(self) -> None:
        for name in ("six_by_two", "gridless", "header_diagnosis"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1, got {getattr(self, name)}")

    def choose(self, label: str, seed: np.random.SeedSequence) -> dict:
        """make_page keyword arguments for one page, from its own stream (the page's is untouched)."""
        if self.six_by_two == 0.0 or (self.confounded and label == "Normal"):
            return {}
        draw = np.random.default_rng([*np.atleast_1d(seed.entropy).tolist(), 62]).random(3)
        if draw[0] >= self.six_by_two:
            return {}
        return {"layout": "6x2", "grid": bool(draw[1] >= self.gridless), "header_diagnosis": bool(draw[2] < self.header_diagnosis)}


def generate_dataset(
    out_dir: str | os.PathLike,
    per_class: int,
    seed: int = 0,
    *,
    confound_covid: bool = False,
    layouts: LayoutMix = LayoutMix(),
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Write ``per_class`` pages per class as ``OUT/<Class>/synth-<seed>-<i>.jpg``.

    Ground truth for every page (class, heart rate, territory, lead boxes, layout...) goes to
    ``OUT/synthetic_meta.jsonl``. Each page has its own seed derived from (seed, class, index),
    so the output does not depend on ``n_jobs``; with the default ``layouts`` every page is 3x4.
    """
    from joblib import Parallel, delayed  # joblib only when writing many pages
    from tqdm.auto import tqdm

    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    out = Path(out_dir)
    jobs = [(label, i) for label in CLASSES for i in range(per_class)]
    for label in CLASSES:
        (out / label).mkdir(parents=True, exist_ok=True)
    n_jobs = n_jobs or min(len(jobs), os.cpu_count() or 1)
    records = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_write_page)(out, label, i, seed, confound_covid, layouts) for label, i in jobs
    )
    records = list(tqdm(records, total=len(jobs), desc="synth", unit="page", disable=progress_disabled(progress, len(jobs))))
    with open(out / "synthetic_meta.jsonl", "w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return out


def _write_page(out: Path, label: str, index: int, seed: int, confound_covid: bool,
                layouts: LayoutMix = LayoutMix()) -> dict:
    page_seed = np.random.SeedSequence([seed, CLASSES.index(label), index])
    page = make_page(label, page_seed, confound_covid=confound_covid, **layouts.choose(label, page_seed))
    rel = Path(label) / f"synth-{seed}-{index:04d}.jpg"
    # Never a half-written page where a scan would find it; no fsync: a page is made again on demand.
    write_bytes(out / rel, page.jpeg_bytes(), durable=False)
    return {"file": str(rel), "label": label, "lead_boxes": page.lead_boxes, **page.meta}


# --- signals -------------------------------------------------------------------------------

def _signals_for(label: str, heart_rate: float, rng: np.random.Generator) -> tuple[dict, dict]:
    amp = {lead: np.array(a) * rng.normal(1.0, 0.12, size=5) for lead, a in _BASE_AMPLITUDE.items()}
    scale = rng.uniform(0.8, 1.25)
    meta: dict = {"rhythm": "sinus"}
    st = {lead: 0.0 for lead in LEADS}  # ST shift (mV) per lead
    q_width = {lead: 1.0 for lead in LEADS}
    rr = _sinus_rr(heart_rate, rng)
    pvc_beats: set[int] = set()
    fibrillation = 0.0

    if label == "Abnormal_HeartBeat":
        if rng.random() < 0.5:
            meta["rhythm"] = "atrial_fibrillation"
            rr = np.clip(60.0 / heart_rate * rng.lognormal(0.0, 0.22, size=len(rr)), 0.33, 2.0)
            for lead in LEADS:
                amp[lead][0] = 0.0  # no P waves
            fibrillation = rng.uniform(0.03, 0.07)
        else:
            meta["rhythm"] = "ventricular_ectopics"
            n = int(rng.integers(2, 5))
            pvc_beats = set(rng.choice(np.arange(2, len(rr) - 1), size=n, replace=False).tolist())
            mean_rr = 60.0 / heart_rate
            for b in pvc_beats:
                rr[b], rr[b + 1] = 0.6 * mean_rr, 1.4 * mean_rr  # premature, then compensatory pause
    elif label in ("MI", "MI_History"):
        territory = str(rng.choice(sorted(TERRITORIES)))
        meta["territory"] = territory
        meta["territory_leads"] = list(TERRITORIES[territory])
        for lead in TERRITORIES[territory]:
            if label == "MI":
                st[lead] = rng.uniform(0.15, 0.4)
                amp[lead][4] = abs(amp[lead][4]) * rng.uniform(1.3, 1.8)  # hyperacute T
            else:
                amp[lead][1] = -rng.uniform(0.25, 0.5)  # deep Q ...
                q_width[lead] = rng.uniform(1.8, 2.4)  # ... and wide (>= 40 ms)
                amp[lead][2] *= rng.uniform(0.4, 0.7)
                amp[lead][4] = -rng.uniform(0.12, 0.3)  # inverted T
        if label == "MI":
            elevation = np.mean([st[lead] for lead in TERRITORIES[territory]])
            for lead in _RECIPROCAL[territory]:
                if lead not in TERRITORIES[territory]:
                    st[lead] = -elevation * rng.uniform(0.4, 0.7)
    elif label == "Covid_19":
        scale *= rng.uniform(0.45, 0.65)  # low voltage
        for lead in rng.choice(LEADS, size=int(rng.integers(4, 8)), replace=False):
            amp[lead][4] *= rng.uniform(-0.3, 0.4)  # flat or shallow inverted T
        for lead in rng.choice(LEADS, size=int(rng.integers(3, 6)), replace=False):
            st[lead] = -rng.uniform(0.03, 0.08)  # mild ST depression

    beats = np.cumsum(rr) - rng.uniform(0.0, rr[0])
    t = np.arange(int(DURATION * FS)) / FS
    noise_sd = rng.uniform(0.004, 0.03)
    wander = (rng.uniform(0.0, 0.12), rng.uniform(0.12, 0.4), rng.uniform(0, 2 * np.pi))
    f_waves = [(rng.uniform(4, 8), rng.uniform(0, 2 * np.pi)) for _ in range(3)]
    signals = {}
    for k, lead in enumerate(LEADS):
        x = np.zeros_like(t)
        for b, r in enumerate(beats):
            if -0.8 < r < DURATION + 0.8:
                if b in pvc_beats:
                    x += _pvc_beat(t, r, amp[lead], rng)
                else:
                    x += _sinus_beat(t, r, amp[lead], rr[b], st[lead], q_width[lead])
        if fibrillation:
            weight = 1.5 if lead in ("II", "III", "aVF", "V1") else 0.8
            x += weight * fibrillation * sum(np.sin(2 * np.pi * f * t + p) for f, p in f_waves) / 1.7
        x = x * scale
        x += wander[0] * np.sin(2 * np.pi * wander[1] * t + wander[2] + 0.3 * k)
        x += rng.normal(0.0, noise_sd, size=t.shape)
        signals[lead] = x.astype(np.float32)
    # The truth behind the page's measures (what a reader of the traces should find), per lead
    # in mV at the page's scale: sinus beats' R, T and ST shift; and every beat's R time in s.
    meta.update(amplitude_scale=round(float(scale), 3), noise_mv=round(float(noise_sd), 4),
                pvc_count=len(pvc_beats),
                beat_times=[round(float(r), 4) for r in beats if 0.0 <= r < DURATION],
                pvc_times=[round(float(beats[b]), 4) for b in sorted(pvc_beats) if 0.0 <= beats[b] < DURATION],
                r_mv={lead: round(float(amp[lead][2] * scale), 4) for lead in LEADS},
                t_mv={lead: round(float(amp[lead][4] * scale), 4) for lead in LEADS},
                st_mv={lead: round(float(st[lead] * scale), 4) for lead in LEADS})
    return signals, meta


def _sinus_rr(heart_rate: float, rng: np.random.Generator) -> np.ndarray:
    mean_rr = 60.0 / heart_rate
    n = int(DURATION / mean_rr) + 6
    phase = rng.uniform(0, 2 * np.pi)
    breathing = 0.03 * np.sin(2 * np.pi * 0.25 * mean_rr * np.arange(n) + phase)
    return mean_rr * (1.0 + breathing + rng.normal(0.0, 0.01, size=n))


def _gauss(t: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2)


def _sinus_beat(t, r, amp, rr, st_shift, q_width) -> np.ndarray:
    p, q, rr_amp, s, tw = amp
    t_peak = r + 0.30 * np.sqrt(rr)
    x = (p * _gauss(t, r - 0.17, 0.022) + q * _gauss(t, r - 0.028 * q_width, 0.009 * q_width)
         + rr_amp * _gauss(t, r, 0.010) + s * _gauss(t, r + 0.028, 0.010)
         + tw * _gauss(t, t_peak, 0.05 * np.sqrt(rr)))
    if st_shift:
        # ST shift from the J point to the end of T: a plateau with soft edges.
        rise = _sigmoid((t - (r + 0.045)) / 0.006)
        fall = _sigmoid(-(t - (t_peak + 0.07)) / 0.025)
        x = x + st_shift * rise * fall
    return x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function, without exp overflow


def _pvc_beat(t, r, amp, rng) -> np.ndarray:
    qrs = (abs(amp[2]) + abs(amp[3])) * rng.uniform(1.0, 1.6) * rng.choice([-1.0, 1.0])
    return qrs * _gauss(t, r, 0.035) - 0.45 * qrs * _gauss(t, r + 0.33, 0.07)


# --- rendering -----------------------------------------------------------------------------

def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _render(signals: dict, heart_rate: float, rng: np.random.Generator, *, layout: str = "3x4", grid: bool = True,
            diagnosis: str | None = None):
    page = Image.new("RGB", PAGE_SIZE, "white")
    draw = ImageDraw.Draw(page)
    _draw_header(draw, heart_rate, rng, layout=layout, diagnosis=diagnosis)
    if grid:
        _draw_grid(draw)
    if layout == "6x2":
        return page, _render_6x2(draw, signals, rng)
    panel_w = 2.5 * _PX_PER_S
    boxes: dict[str, tuple[int, int, int, int]] = {}
    pen = int(rng.integers(2, 4))
    for row, leads in enumerate(_LAYOUT_3X4):
        y = _ROW_Y[row]
        _draw_calibration(draw, y, pen)
        for col, lead in enumerate(leads):
            x0 = _TRACE_X0 + col * panel_w
            segment = signals[lead][int(col * 2.5 * FS):int((col + 1) * 2.5 * FS)]
            _draw_trace(draw, x0, y, segment, pen)
            draw.text((x0 + 4, y - 44), lead, fill="black", font=_font(30))
            boxes[lead] = _cell(x0, y, panel_w)
            if col:
                draw.line([(x0, _ROW_Y[0] - 110), (x0, _ROW_Y[2] + 60)], fill="black", width=2)
    y = _ROW_Y[3]
    _draw_calibration(draw, y, pen)
    _draw_trace(draw, _TRACE_X0, y, signals["II"], pen)
    draw.text((_TRACE_X0 + 4, y - 44), "II", fill="black", font=_font(30))
    boxes[RHYTHM] = _cell(_TRACE_X0, y, 4 * panel_w)
    return page, boxes


def _render_6x2(draw: ImageDraw.ImageDraw, signals: dict, rng: np.random.Generator) -> dict:
    panel_w = 5.0 * _PX_PER_S
    boxes: dict[str, tuple[int, int, int, int]] = {}
    pen = int(rng.integers(2, 4))
    for row, leads in enumerate(_LAYOUT_6X2):
        y = _ROW_Y_6X2[row]
        _draw_calibration(draw, y, pen)
        for col, lead in enumerate(leads):
            x0 = _TRACE_X0 + col * panel_w
            _draw_trace(draw, x0, y, signals[lead][int(col * 5 * FS):int((col + 1) * 5 * FS)], pen)
            draw.text((x0 + 4, y - 44), lead, fill="black", font=_font(30))
            boxes[lead] = _cell(x0, y, panel_w, _ROW_PITCH_6X2)
    x_split = _TRACE_X0 + panel_w
    draw.line([(x_split, _ROW_Y_6X2[0] - 90), (x_split, _ROW_Y_6X2[-1] + 60)], fill="black", width=2)
    return boxes


def _cell(x0: float, y: float, width: float, pitch: float = _ROW_PITCH) -> tuple[int, int, int, int]:
    return (round(x0), round(y - pitch / 2), round(x0 + width), round(y + pitch / 2))


def _draw_header(draw: ImageDraw.ImageDraw, heart_rate: float, rng: np.random.Generator, *, layout: str = "3x4",
                 diagnosis: str | None = None) -> None:
    w = PAGE_SIZE[0]
    title = "CPEIC_MULTAN_EDAN ECG REPORT" if diagnosis else "ECG REPORT"
    draw.text((w / 2, 45), title, fill="black", font=_font(44), anchor="mm")
    sex = "Male" if rng.random() < 0.5 else "Female"
    draw.text((68, 72), f"ID : {rng.integers(10000, 999999)}      {rng.integers(18, 90)}Years    {sex}"
                        "      cm       kg       /   mmHg    Race:Unknown     Room No.:", fill="black",
              font=_font(26))
    draw.text((68, 106), "Exam.Room:      Medication:", fill="black", font=_font(26))
    draw.line([(68, 138), (2150, 138)], fill="black", width=3)
    draw.line([(68, 145), (2150, 145)], fill="black", width=2)
    draw.text((68, 152), "Diagnosis Information:", fill="black", font=_font(26))
    if diagnosis:
        draw.text((68, 186), diagnosis, fill="black", font=_font(30))
    for i, text in enumerate(("Technician :", "Ref-Phys. :", "Report Confirmed by:")):
        draw.text((1555, 178 + 32 * i), text, fill="black", font=_font(26))
    sequence = "2*5s" if layout == "6x2" else "4*2.5s+1r"
    draw.text((68, 1530), f"0.67~25Hz  AC50  25mm/s  10mm/mV  {sequence}  {heart_rate:.0f}bpm  SE-3 V1.0",
              fill="black", font=_font(24))
    draw.text((1790, 1530), f"20{rng.integers(18, 22)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}",
              fill="black", font=_font(24))


def _draw_grid(draw: ImageDraw.ImageDraw) -> None:
    x0, y0, x1, y1 = _GRID_BOX
    for i in range(int((x1 - x0) / _PX_PER_MM) + 1):
        x = x0 + i * _PX_PER_MM
        draw.line([(x, y0), (x, y1)], fill=(240, 170, 185) if i % 5 == 0 else (252, 226, 231), width=1)
    for i in range(int((y1 - y0) / _PX_PER_MM) + 1):
        y = y0 + i * _PX_PER_MM
        draw.line([(x0, y), (x1, y)], fill=(240, 170, 185) if i % 5 == 0 else (252, 226, 231), width=1)
    draw.rectangle(_GRID_BOX, outline=(235, 140, 160), width=3)


def _draw_calibration(draw: ImageDraw.ImageDraw, y: float, pen: int) -> None:
    # As EDAN prints it: 1 mV for 0.1 s with short feet, about 2 mm clear of the trace start.
    x, top, width = 104, y - _PX_PER_MV, 0.1 * _PX_PER_S
    draw.line([(x - 8, y), (x, y), (x, top), (x + width, top), (x + width, y), (x + width + 8, y)],
              fill="black", width=pen)


def _draw_trace(draw: ImageDraw.ImageDraw, x0: float, y: float, signal: np.ndarray, pen: int) -> None:
    xs = x0 + np.arange(len(signal)) * (_PX_PER_S / FS)
    ys = np.clip(y - signal * _PX_PER_MV, 0, PAGE_SIZE[1] - 1)
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill="black", width=pen, joint="curve")


# --- scan effects --------------------------------------------------------------------------

def _scan_effects(page: Image.Image, boxes: dict, rng: np.random.Generator, *, covid_scan: bool):
    """Rotation, size, blur, paper noise and JPEG quality; boxes follow the geometry."""
    angle = float(rng.uniform(-1.5, 1.5)) if rng.random() < 0.5 else 0.0
    if covid_scan:
        # The public dataset's trap: COVID pages are smaller portrait scans of another device.
        size = (int(rng.integers(930, 975)), int(rng.integers(1205, 1250)))
    elif rng.random() < 0.3:
        factor = rng.uniform(0.5, 0.95)
        size = (round(PAGE_SIZE[0] * factor), round(PAGE_SIZE[1] * factor * rng.uniform(0.98, 1.02)))
    else:
        size = PAGE_SIZE
    if angle:
        page = page.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor="white")
        boxes = {k: _rotate_box(b, angle) for k, b in boxes.items()}
    if covid_scan:
        page, boxes = _portrait_scan(page, boxes, size)
    elif size != PAGE_SIZE:
        sx, sy = size[0] / PAGE_SIZE[0], size[1] / PAGE_SIZE[1]
        page = page.resize(size, Image.Resampling.LANCZOS)
        boxes = {k: (round(b[0] * sx), round(b[1] * sy), round(b[2] * sx), round(b[3] * sy)) for k, b in boxes.items()}
    blur = float(rng.uniform(0.3, 1.2)) if rng.random() < 0.5 else 0.0
    if blur:
        page = page.filter(ImageFilter.GaussianBlur(blur))
    paper_noise = float(rng.uniform(0.0, 6.0))
    if paper_noise:
        pixels = np.asarray(page, dtype=np.int16)
        pixels = pixels + rng.normal(0.0, paper_noise, size=pixels.shape[:2])[..., None].astype(np.int16)
        page = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    quality = int(rng.integers(60, 80)) if covid_scan else int(rng.integers(80, 96))
    look = {"rotation_deg": round(angle, 2), "blur": round(blur, 2), "page_size": list(page.size),
            "jpeg_quality": quality, "scan": "portrait" if covid_scan else "flat"}
    return page, boxes, look


@dataclass(frozen=True)
class ScanArtefacts:
    """Scan artefacts applied exactly (a fidelity benchmark compares pages level by level).

    ``rotation_deg`` counter-clockwise; ``scale`` of the page's size; ``blur`` Gaussian radius
    in px; ``noise`` paper noise (grey levels, sd); ``contrast`` of the ink against the paper
    (1.0 black ink, 0.6 faded); ``jpeg_quality`` for whoever encodes the page.
    """

    rotation_deg: float = 0.0
    scale: float = 1.0
    blur: float = 0.0
    noise: float = 0.0
    contrast: float = 1.0
    jpeg_quality: int = 95


# Clean: as printed; mild and strong: a careful and a careless scan (within what the random
# scan effects of make_page draw, plus faded ink).
SCAN_LEVELS = {
    "clean": ScanArtefacts(),
    "mild": ScanArtefacts(rotation_deg=0.7, scale=0.8, blur=0.6, noise=3.0, contrast=0.85, jpeg_quality=85),
    "strong": ScanArtefacts(rotation_deg=1.5, scale=0.6, blur=1.2, noise=6.0, contrast=0.65, jpeg_quality=70),
}


def _apply_scan(page: Image.Image, boxes: dict, scan: ScanArtefacts):
    if scan.rotation_deg:
        page = page.rotate(scan.rotation_deg, resample=Image.Resampling.BILINEAR, fillcolor="white")
        boxes = {k: _rotate_box(b, scan.rotation_deg) for k, b in boxes.items()}
    if scan.scale != 1.0:
        size = (round(PAGE_SIZE[0] * scan.scale), round(PAGE_SIZE[1] * scan.scale))
        page = page.resize(size, Image.Resampling.LANCZOS)
        boxes = {k: tuple(round(v * scan.scale) for v in b) for k, b in boxes.items()}
    if scan.blur:
        page = page.filter(ImageFilter.GaussianBlur(scan.blur))
    pixels = np.asarray(page, dtype=np.float32)
    if scan.contrast != 1.0:
        pixels = 255.0 - (255.0 - pixels) * scan.contrast
    if scan.noise:
        noise = np.random.default_rng(0).normal(0.0, scan.noise, size=pixels.shape[:2])
        pixels = pixels + noise[..., None]
    page = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    look = {"rotation_deg": scan.rotation_deg, "blur": scan.blur, "page_size": list(page.size),
            "jpeg_quality": scan.jpeg_quality, "scan": "given"}
    return page, boxes, look


def _rotate_box(box, angle: float) -> tuple[int, int, int, int]:
    # PIL rotates counter-clockwise about the centre, in image coordinates (y down).
    cx, cy = PAGE_SIZE[0] / 2, PAGE_SIZE[1] / 2
    a = np.deg2rad(angle)
    corners = np.array([(box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])], dtype=float)
    dx, dy = corners[:, 0] - cx, corners[:, 1] - cy
    xs = cx + dx * np.cos(a) + dy * np.sin(a)
    ys = cy - dx * np.sin(a) + dy * np.cos(a)
    return round(xs.min()), round(ys.min()), round(xs.max()), round(ys.max())


def _portrait_scan(page: Image.Image, boxes: dict, size: tuple[int, int]):
    """Shrink the landscape page onto a portrait sheet of greyish scanner paper."""
    scale = size[0] / PAGE_SIZE[0]
    inner = page.resize((size[0], round(PAGE_SIZE[1] * scale)), Image.Resampling.LANCZOS)
    inner = Image.blend(inner, inner.convert("L").convert("RGB"), 0.7)
    sheet = Image.new("RGB", size, (228, 228, 224))
    top = (size[1] - inner.height) // 2
    sheet.paste(inner, (0, top))
    boxes = {k: (round(b[0] * scale), round(b[1] * scale) + top, round(b[2] * scale), round(b[3] * scale) + top)
             for k, b in boxes.items()}
    return sheet, boxes


DEMO_PER_CLASS = 40
# The demo shows both layouts, as real data does: 30% of pages 6x2, 40% of those on blank paper,
# 30% of those with the device's diagnosis printed in the header (which no model ever sees).
DEMO_LAYOUTS = LayoutMix(six_by_two=0.3, gridless=0.4, header_diagnosis=0.3)


def demo_dataset(per_class: int = DEMO_PER_CLASS, seed: int = 0, *, progress: bool | None = None) -> Path:
    """The built-in demo set, made on first use under ``$SMARTECG_CACHE/demo`` and reused after.

    Written to a temporary folder and renamed into place, so an interrupted first run never
    leaves half a dataset that later runs would take as complete.
    """
    import shutil
    import tempfile

    from features.cache import cache_root

    root = cache_root() / "demo"
    target = root / f"synthetic-v2-{per_class}-seed{seed}"
    if (target / "synthetic_meta.jsonl").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".making-", dir=root))
    try:
        generate_dataset(staging, per_class, seed, layouts=DEMO_LAYOUTS, progress=progress)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: use theirs
            if not (target / "synthetic_meta.jsonl").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
