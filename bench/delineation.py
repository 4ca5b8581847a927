"""Beats, R, ST and T read off synthetic pages: features.measures against neurokit2's delineation.

    python bench/delineation.py [--seeds 2] [--levels clean,mild] [--no-oracle]

Synthetic pages of every class (Abnormal_HeartBeat: as many atrial-fibrillation as PVC pages, the
first seeds of each) in both layouts (3x4, 6x2) at each scan-artefact level of
``features.synthetic.SCAN_LEVELS`` (JPEG-encoded at the level's quality) are read once with
``features.source_traces.read_source_page`` and compared with the truth the generator keeps in
``page.meta``. The level ``true-sig`` (unless ``--no-oracle``) runs the same methods on the
generator's own signals cut to the nominal panels at 500 Hz: what is left there is the method
and the truth's definition, not the reading.

Beats (every beat, PVCs included): ``features.measures.page_beats``, ``features.rhythm.beat_times``,
``nk.ecg_peaks`` after ``nk.ecg_clean`` on the rhythm strip (3x4) or lead II (6x2) resampled to
500 Hz, and the same on every lead panel (pooled). A detection within 50 ms of a true beat is a hit
(one to one); sensitivity counts the true beats at least 40 ms inside the span the method read.

Per lead (sinus beats; the lead's median over its beats), against the truth:

* R amplitude: ``meta['r_mv']`` (the R Gaussian's height; the S and Q tails take up to ~2% of S
  off the apex, e.g. ~0.02 mV in V2). A 6x2 row is read over +-half its pitch (205 px at 78.4
  px/mV): an R above ~1.3 mV is clipped for every method. ``R apex`` (nk only): the highest
  sample within 10 ms of neurokit2's R peak, which sits a sample or two before the raw apex.
* ST level: ``meta['st_mv']`` (the plateau's height; the rise and the T wave's upstroke move the
  level a method's window sees, printed as the truth-definition gap).
* T peak: the generator's level at the T apex (``_sinus_beat`` with only T and ST), which is
  ``t_mv + 0.943 * st_mv``: the ST plateau is still on at the apex (its fall is centred 70 ms
  after it). Leads whose T Gaussian is under 0.05 mV (flat T: no peak to find) are left out.
* T window: ``features.measures``' own T definition, the mean level 0.2-0.4 sqrt(RR) s after the
  beat, ~0.6 of the T Gaussian plus the ST plateau (measures only).

neurokit2: per lead, ``nk.ecg_clean`` and ``nk.ecg_peaks`` on the lead resampled to 500 Hz,
``nk.ecg_delineate(method='dwt')``, ``method='peak'`` when dwt raises; R = signal at the R peak,
T = mean signal within 10 ms of the T peak, ST = mean signal 60-80 ms after the R offset (dwt) or
the S peak + 40 ms (peak), each minus the PR level (mean from the P offset, or P peak + 40 ms, to
the R onset, or Q peak - 10 ms; 100-50 ms before R when those are missing). ecg_delineate cuts
beats with ``ecg_segment``, which refuses signals under 4 s: every 2.25-s 3x4 panel fails, which
is counted; the ``pad4s`` variant appends the cleaned signal's median to 4.2 s to get past that
(it still fails on a panel with two R peaks: ecg_segment's rate is NaN then).

Main rows leave out the atrial-fibrillation pages (f-waves on the PR, ST and T levels); the
per-group table after it shows every group, AF and PVC pages apart, on the 6x2 pages only (where
both methods give values). Seconds per page: each method's own calls, after the shared read.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from features.dataset import CLASSES  # noqa: E402
from features.measures import LEAD_MEASURES, measures_of, page_beats  # noqa: E402
from features.pages import LEADS, RHYTHM  # noqa: E402
from features.rhythm import beat_times  # noqa: E402
from features.source_traces import read_source_page  # noqa: E402
from features.synthetic import FS as TRUE_FS  # noqa: E402
from features.synthetic import SCAN_LEVELS, _sinus_beat, make_page  # noqa: E402
from features.traces import LeadSignals  # noqa: E402

NK_FS = 500  # Hz every signal is resampled to for neurokit2
MATCH = 0.05  # s: a detection this close to a true beat is a hit
EDGE = 0.04  # s: a true beat counts for sensitivity when this far inside the span read
PVC_GUARD = 0.12  # s: nk beats this close to a PVC are not measured
NK_SHORTEST = 4.0  # s: what nk.ecg_segment (under ecg_delineate) accepts
PAD_TO = 4.2  # s the pad4s variant lengthens a short panel to
FLAT_T = 0.05  # mV: a T Gaussian below this has no peak to find
LAYOUTS = ("3x4", "6x2")
ORACLE = "true-sig"
GROUPS = ("Normal", "AF", "PVC", "MI", "MI_History", "Covid_19")
BEAT_METHODS = ("measures.page_beats", "rhythm.beat_times", "nk strip/II", "nk every panel")
NK = "nk dwt|peak"
NK_PAD = "nk dwt|peak pad4s"
AMP_ROWS = (("R amplitude", "r"), ("R apex", "r_apex"), ("ST level", "st"), ("T peak", "t_peak"),
            ("T window", "t_window"))
NK_QUANTITIES = ("r", "r_apex", "st", "t_peak")
ONLY = {"t_window": ("measures",), "r_apex": (NK, NK_PAD)}  # rows a quantity has (else every method)


# --- truth ---------------------------------------------------------------------------------

def page_truth(page) -> dict:
    """Beat times, groups and the per-lead truths of every compared quantity."""
    meta = page.meta
    beats = np.asarray(meta["beat_times"], dtype=float)
    rr = float(np.mean(np.diff(beats))) if len(beats) > 1 else 1.0
    group = page.label
    if page.label == "Abnormal_HeartBeat":
        group = "AF" if meta["rhythm"] == "atrial_fibrillation" else "PVC"
    t = np.arange(-0.2, 0.3 * np.sqrt(rr) + 0.4, 1.0 / TRUE_FS)
    per_lead = {}
    for lead in LEADS:
        # The T and ST part of one sinus beat, exactly as the generator sums it (R at t = 0).
        tw, st = meta["t_mv"][lead], meta["st_mv"][lead]
        tail = _sinus_beat(t, 0.0, (0.0, 0.0, 0.0, 0.0, tw), rr, st, 1.0)

        def mean_over(a, b):
            return float(tail[(t >= a) & (t < b)].mean())

        per_lead[lead] = {
            "r": meta["r_mv"][lead], "r_apex": meta["r_mv"][lead], "st": st,
            "t_peak": float(np.interp(0.3 * np.sqrt(rr), t, tail)) if abs(tw) >= FLAT_T else np.nan,
            "t_window": mean_over(0.2 * np.sqrt(rr), 0.4 * np.sqrt(rr)),
            # What each ST window sees of the plateau (+ T upstroke), minus the plateau itself.
            "st_gap_measures": mean_over(0.06, 0.12) - st,
            "st_gap_nk": mean_over(0.115, 0.135) - st,  # dwt's R offset lands ~55 ms after R
        }
    return {"beats": beats, "pvc": np.asarray(meta["pvc_times"], dtype=float), "group": group,
            "lead": per_lead}


def oracle_signals(page) -> LeadSignals:
    """The generator's signals at 500 Hz on the nominal panels, as read_source_page lays them out."""
    mv, start = {}, {}
    if page.layout == "3x4":
        columns = (("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6"))
        spans = {lead: (2.5 * j + 0.25, 2.5 * (j + 1)) for j, col in enumerate(columns) for lead in col}
        spans[RHYTHM] = (0.25, 10.0)
    else:
        spans = {lead: (0.5, 5.0) for lead in ("I", "II", "III", "aVR", "aVL", "aVF")}
        spans.update({lead: (5.5, 10.0) for lead in ("V1", "V2", "V3", "V4", "V5", "V6")})
    for name, (a, b) in spans.items():
        k0, k1 = int(round(a * TRUE_FS)), int(round(b * TRUE_FS))
        mv[name] = page.signals["II" if name == RHYTHM else name][k0:k1].astype(np.float32)
        start[name] = (k0 - 0.25) / TRUE_FS  # sample i centred at k0 + i (+0.25) samples, t = index / FS
    return LeadSignals(mv=mv, start_seconds=start, samples_per_second=float(TRUE_FS), px_per_mv=1.0,
                       calibrated=True)


def page_seeds(label: str, n: int) -> list[int]:
    """Seeds 0..n-1; for Abnormal_HeartBeat the first n seeds of each of its rhythms (AF and PVCs)."""
    if label != "Abnormal_HeartBeat":
        return list(range(n))
    found: dict[str, list[int]] = {"atrial_fibrillation": [], "ventricular_ectopics": []}
    seed = 0
    while any(len(seeds) < n for seeds in found.values()):
        rhythm = make_page(label, seed, layout="6x2", scan=SCAN_LEVELS["clean"]).meta["rhythm"]
        if len(found[rhythm]) < n:
            found[rhythm].append(seed)
        seed += 1
    return sorted(found["atrial_fibrillation"] + found["ventricular_ectopics"])


# --- beats ---------------------------------------------------------------------------------

def span_of(signals: LeadSignals, name: str) -> tuple[float, float]:
    start = signals.start_seconds[name]
    return start, start + len(signals.mv[name]) / signals.samples_per_second


def merged(spans) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 0.05:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [tuple(s) for s in out]


def score_beats(found: np.ndarray, truth: np.ndarray, spans) -> dict:
    """One-to-one hits within MATCH (nearest pairs first); sensitivity inside ``spans``."""
    found = np.asarray(found, dtype=float)
    pairs = sorted((abs(f - g), i, j) for i, f in enumerate(found) for j, g in enumerate(truth) if abs(f - g) <= MATCH)
    used_f, used_t, errors = set(), set(), []
    for _, i, j in pairs:
        if i in used_f or j in used_t:
            continue
        used_f.add(i), used_t.add(j)
        errors.append(1000.0 * (found[i] - truth[j]))
    counted = [j for j, g in enumerate(truth) if any(a + EDGE <= g <= b - EDGE for a, b in spans)]
    return {"tp_truth": sum(j in used_t for j in counted), "n_truth": len(counted),
            "tp_found": len(used_f), "n_found": len(found), "errors": errors}


# --- neurokit2 -----------------------------------------------------------------------------

def resampled(signals: LeadSignals, name: str) -> tuple[np.ndarray, float]:
    """(the signal at NK_FS, time in s of its first sample)."""
    mv = np.asarray(signals.mv[name], dtype=np.float64)
    times = signals.start_seconds[name] + (np.arange(len(mv)) + 0.5) / signals.samples_per_second
    grid = np.arange(times[0], times[-1], 1.0 / NK_FS)
    return np.interp(grid, times, mv), float(grid[0])


def nk_peaks(raw: np.ndarray):
    """(cleaned signal, R peak indices) or raises."""
    import neurokit2 as nk

    clean = nk.ecg_clean(raw, sampling_rate=NK_FS)
    _, info = nk.ecg_peaks(clean, sampling_rate=NK_FS)
    return clean, np.asarray(info["ECG_R_Peaks"], dtype=int)


def nk_delineate(clean: np.ndarray, rpeaks: np.ndarray, pad: bool):
    """(waves, method used, error text of what failed)."""
    import neurokit2 as nk

    signal = clean
    if pad and len(clean) < NK_SHORTEST * NK_FS:
        signal = np.r_[clean, np.full(int(PAD_TO * NK_FS) - len(clean), np.median(clean))]
    errors = []
    for method in ("dwt", "peak"):
        try:
            _, waves = nk.ecg_delineate(signal, rpeaks, sampling_rate=NK_FS, method=method)
            return waves, method, "; ".join(errors)
        except Exception as error:  # noqa: BLE001 - any neurokit2 failure is a counted failure
            errors.append(f"{method}: {type(error).__name__}: {str(error)[:60]}")
    return None, None, "; ".join(errors)


def _pick(waves: dict, key: str, lo: float, hi: float, last: bool = False) -> float | None:
    values = np.asarray(waves.get(key, []), dtype=float)
    values = values[np.isfinite(values) & (values >= lo) & (values <= hi)]
    if not len(values):
        return None
    return float(values.max() if last else values.min())


def nk_beat_values(raw: np.ndarray, waves: dict, rpeaks: np.ndarray, keep: np.ndarray) -> dict:
    """Median over the kept beats of R, T and ST above the PR level (NaN where none)."""
    fs, n = NK_FS, len(raw)
    values = defaultdict(list)

    def mean(a: float, b: float) -> float | None:
        a, b = int(round(a)), int(round(b))
        return float(raw[a:b].mean()) if 0 <= a < b <= n else None

    for k, r in enumerate(rpeaks):
        if not keep[k]:
            continue
        following = rpeaks[k + 1] if k + 1 < len(rpeaks) else r + 0.6 * fs
        p_off = _pick(waves, "ECG_P_Offsets", r - 0.3 * fs, r - 0.01 * fs, last=True)
        p_peak = _pick(waves, "ECG_P_Peaks", r - 0.35 * fs, r - 0.04 * fs, last=True)
        r_on = _pick(waves, "ECG_R_Onsets", r - 0.15 * fs, r, last=True)
        q_peak = _pick(waves, "ECG_Q_Peaks", r - 0.1 * fs, r, last=True)
        start = p_off if p_off is not None else (p_peak + 0.04 * fs if p_peak is not None else None)
        end = r_on if r_on is not None else (q_peak - 0.01 * fs if q_peak is not None else None)
        if start is None or end is None or end - start < 0.01 * fs or r - start > 0.3 * fs:
            start, end = r - 0.10 * fs, r - 0.05 * fs
        pr = mean(start, end + 1)
        if pr is None:
            continue
        values["r"].append(raw[r] - pr)
        apex = raw[max(r - int(0.01 * fs), 0):r + int(0.01 * fs) + 1]
        values["r_apex"].append(float(apex.max()) - pr)
        t_peak = _pick(waves, "ECG_T_Peaks", r + 0.08 * fs, min(following, r + 0.6 * fs))
        if t_peak is not None:
            t = mean(t_peak - 0.01 * fs, t_peak + 0.01 * fs + 1)
            if t is not None:
                values["t_peak"].append(t - pr)
        r_off = _pick(waves, "ECG_R_Offsets", r, r + 0.16 * fs)
        if r_off is None:
            s_peak = _pick(waves, "ECG_S_Peaks", r, r + 0.1 * fs)
            r_off = s_peak + 0.04 * fs if s_peak is not None else None
        if r_off is not None:
            st = mean(r_off + 0.06 * fs, r_off + 0.08 * fs + 1)
            if st is not None:
                values["st"].append(st - pr)
    return {q: float(np.median(values[q])) if values[q] else np.nan for q in NK_QUANTITIES}


# --- one page ------------------------------------------------------------------------------

def evaluate(signals: LeadSignals, truth: dict, layout: str, level: str, out: dict) -> None:
    """Every method on one page's signals; rows appended to ``out``."""
    base = {"layout": layout, "level": level, "group": truth["group"]}
    clock = time.perf_counter

    def timed(method: str, seconds: float) -> None:
        out["times"].append({**base, "method": method, "seconds": seconds})

    def beats_row(method: str, found, spans) -> None:
        out["beats"].append({**base, "method": method, **score_beats(found, truth["beats"], spans)})

    every_span = merged(span_of(signals, name) for name in signals.mv)
    started = clock()
    found, segment = page_beats(signals)
    timed("measures.page_beats", clock() - started)
    beats_row("measures.page_beats", found, every_span)

    started = clock()
    found = beat_times(signals)
    timed("rhythm.beat_times", clock() - started)
    if RHYTHM in signals.mv:
        spans = [span_of(signals, RHYTHM)]
    else:  # beat_times keeps the first stretch of panels when it holds 3 beats or more
        spans = every_span[:1] if len(segment) and (segment == segment[0]).sum() >= 3 else every_span
    beats_row("rhythm.beat_times", found, spans)

    strip = RHYTHM if RHYTHM in signals.mv else "II"
    started = clock()
    try:
        raw, t0 = resampled(signals, strip)
        found = t0 + nk_peaks(raw)[1] / NK_FS
    except (ValueError, IndexError, ZeroDivisionError):
        found = np.zeros(0)
    timed("nk strip/II", clock() - started)
    beats_row("nk strip/II", found, [span_of(signals, strip)])

    started = clock()
    measured = measures_of(signals)[:len(LEADS) * len(LEAD_MEASURES)].reshape(len(LEADS), len(LEAD_MEASURES))
    timed("measures", clock() - started)
    column = {"r": LEAD_MEASURES.index("r_mv"), "st": LEAD_MEASURES.index("st_mv"), "t_mv": LEAD_MEASURES.index("t_mv")}

    nk_seconds, pad_seconds, peaks_seconds = 0.0, 0.0, 0.0
    for i, lead in enumerate(LEADS):
        lead_truth = truth["lead"][lead]

        def amp(quantity: str, method: str, value: float) -> None:
            out["amps"].append({**base, "lead": lead, "quantity": quantity, "method": method,
                                "value": value, "truth": lead_truth[quantity]})

        m = measured[i]
        amp("r", "measures", m[column["r"]] if m[column["r"]] != 0 else np.nan)
        amp("st", "measures", m[column["st"]] if m[column["r"]] != 0 else np.nan)
        amp("t_peak", "measures", m[column["t_mv"]] if m[column["r"]] != 0 else np.nan)
        amp("t_window", "measures", m[column["t_mv"]] if m[column["r"]] != 0 else np.nan)

        started = clock()
        raw, t0 = resampled(signals, lead)
        try:
            clean, rpeaks = nk_peaks(raw)
            peaks_error = "" if len(rpeaks) else "no R peaks"
        except (ValueError, IndexError, ZeroDivisionError) as error:
            rpeaks, peaks_error = np.zeros(0, dtype=int), f"ecg_peaks: {type(error).__name__}"
        peaks_seconds += clock() - started
        found = t0 + rpeaks / NK_FS
        beats_row("nk every panel", found, [span_of(signals, lead)])
        keep = np.array([not len(truth["pvc"]) or np.min(np.abs(truth["pvc"] - f)) > PVC_GUARD for f in found], bool)
        short = len(raw) < NK_SHORTEST * NK_FS
        results, padding = {}, 0.0
        for variant, pad in ((NK, False), (NK_PAD, True)):
            if variant == NK_PAD and not short:
                results[variant] = results[NK]  # nothing to pad: the same call
                continue
            lap = clock()
            if peaks_error:
                waves, used, error = None, None, peaks_error
            else:
                waves, used, error = nk_delineate(clean, rpeaks, pad)
            values = (nk_beat_values(raw, waves, rpeaks, keep) if waves is not None
                      else dict.fromkeys(NK_QUANTITIES, np.nan))
            results[variant] = (values, used, error)
            if variant == NK_PAD:
                padding = clock() - lap
        nk_seconds += clock() - started - padding
        pad_seconds += padding
        for variant, (values, used, error) in results.items():
            status = ("no R peaks" if peaks_error else "dwt" if used == "dwt" else "peak (dwt failed)" if used == "peak"
                      else "both failed")
            out["panels"].append({**base, "variant": variant, "status": status, "error": error,
                                  "short": short})
            for quantity in NK_QUANTITIES:
                amp(quantity, variant, values[quantity])
    timed(NK, nk_seconds)
    timed(NK_PAD, nk_seconds + pad_seconds)
    timed("nk every panel", peaks_seconds)


# --- report --------------------------------------------------------------------------------

def _beat_cell(rows: list[dict]) -> tuple[str, int]:
    if not rows:
        return "-", 0
    tp_t, n_t = sum(r["tp_truth"] for r in rows), sum(r["n_truth"] for r in rows)
    tp_f, n_f = sum(r["tp_found"] for r in rows), sum(r["n_found"] for r in rows)
    errors = np.concatenate([r["errors"] for r in rows if r["errors"]] or [np.zeros(0)])
    sens = tp_t / n_t if n_t else np.nan
    ppv = tp_f / n_f if n_f else np.nan
    timing = f"{np.median(np.abs(errors)):4.1f}ms({np.median(errors):+5.1f})" if len(errors) else "    -"
    return f"Se {sens:.3f} PPV {ppv:.3f} |e| {timing}", n_t


def _amp_cell(rows: list[dict]) -> tuple[str, int, float]:
    rows = [r for r in rows if np.isfinite(r["truth"])]
    if not rows:
        return "-", 0, np.nan
    ok = [r for r in rows if np.isfinite(r["value"])]
    fail = 1 - len(ok) / len(rows)
    if not ok:
        return "all failed", len(rows), fail
    err = np.array([r["value"] - r["truth"] for r in ok])
    return f"MAE {np.mean(np.abs(err)):.3f} bias {np.mean(err):+.3f}", len(ok), fail


def _seconds(out: dict, method: str, level: str) -> str:
    values = [r["seconds"] for r in out["times"] if r["method"] == method and r["level"] == level]
    return f"{np.mean(values):.3f}" if values else "-"


def report(out: dict, levels: list[str], read_seconds: dict) -> None:
    print("\nread_source_page (shared by every method): "
          + ", ".join(f"{lv} {np.mean(v):.2f} s/page" for lv, v in read_seconds.items()))
    width = 37
    head = f"{'quantity':<12} {'method':<20} {'level':<8} " + " ".join(
        f"{layout + ': value':<{width}} {'n':>5} {'fail':>5}" for layout in LAYOUTS) + f" {'s/page':>7}"
    print("\nMain table (beats: every page; R/ST/T: sinus beats, AF pages left out; fail = leads with no value)")
    print(head)
    print("-" * len(head))
    for method in BEAT_METHODS:
        for level in levels:
            cells = []
            for layout in LAYOUTS:
                text, n = _beat_cell([r for r in out["beats"] if r["method"] == method and r["level"] == level
                                      and r["layout"] == layout])
                cells.append(f"{text:<{width}} {n:>5} {'':>5}")
            print(f"{'beats':<12} {method:<20} {level:<8} " + " ".join(cells) + f" {_seconds(out, method, level):>7}")
    for title, quantity in AMP_ROWS:
        for method in ONLY.get(quantity, ("measures", NK, NK_PAD)):
            for level in levels:
                cells = []
                for layout in LAYOUTS:
                    text, n, fail = _amp_cell([r for r in out["amps"] if r["quantity"] == quantity
                                               and r["method"] == method and r["level"] == level
                                               and r["layout"] == layout and r["group"] != "AF"])
                    cells.append(f"{text:<{width}} {n:>5} {fail:>5.0%}" if np.isfinite(fail) else
                                 f"{text:<{width}} {n:>5} {'':>5}")
                print(f"{title:<12} {method:<20} {level:<8} " + " ".join(cells) + f" {_seconds(out, method, level):>7}")

    read_levels = [lv for lv in levels if lv != ORACLE]
    print(f"\nPer group, 6x2 pages (where ecg_delineate runs), levels {', '.join(read_levels)}: "
          "MAE mV (n leads), beats Se/PPV")
    print(f"{'quantity':<12} {'method':<20} " + " ".join(f"{g:>16}" for g in GROUPS))
    for method in BEAT_METHODS:
        cells = []
        for group in GROUPS:
            rows = [r for r in out["beats"] if r["method"] == method and r["group"] == group
                    and r["level"] in read_levels and r["layout"] == "6x2"]
            tp_t, n_t = sum(r["tp_truth"] for r in rows), sum(r["n_truth"] for r in rows)
            tp_f, n_f = sum(r["tp_found"] for r in rows), sum(r["n_found"] for r in rows)
            cells.append(f"{tp_t / max(n_t, 1):.2f}/{tp_f / max(n_f, 1):.2f}" if rows else "-")
        print(f"{'beats':<12} {method:<20} " + " ".join(f"{c:>16}" for c in cells))
    for title, quantity in AMP_ROWS:
        for method in [m for m in ONLY.get(quantity, ("measures", NK)) if m != NK_PAD]:
            cells = []
            for group in GROUPS:
                rows = [r for r in out["amps"] if r["quantity"] == quantity and r["method"] == method
                        and r["group"] == group and r["level"] in read_levels and r["layout"] == "6x2"
                        and np.isfinite(r["truth"]) and np.isfinite(r["value"])]
                err = np.array([r["value"] - r["truth"] for r in rows])
                cells.append(f"{np.mean(np.abs(err)):.3f} ({len(err)})" if len(err) else "-")
            print(f"{title:<12} {method:<20} " + " ".join(f"{c:>16}" for c in cells))

    print("\nneurokit2 per lead panel (all groups): share of panels by outcome")
    for variant in (NK, NK_PAD):
        for level in levels:
            for layout in LAYOUTS:
                rows = [r for r in out["panels"] if r["variant"] == variant and r["level"] == level
                        and r["layout"] == layout]
                if not rows:
                    continue
                counts = Counter(r["status"] for r in rows)
                shares = ", ".join(f"{k} {v / len(rows):.0%}" for k, v in counts.most_common())
                print(f"  {variant:<18} {level:<8} {layout}: {len(rows):>4} panels: {shares}")
    errors = Counter(r["error"] for r in out["panels"] if r["error"])
    for text, count in errors.most_common(4):
        print(f"  {count:>5} x {text}")

    print("\nTruth-definition gaps (leads of non-AF pages, |.| mV mean/max): "
          + ", ".join(f"{k} {mean:.4f}/{top:.4f}" for k, (mean, top) in out["gaps"].items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2,
                        help="pages per class, layout and level (Abnormal_HeartBeat: this many of each rhythm)")
    parser.add_argument("--levels", default="clean,mild", help="scan-artefact levels, of " + ", ".join(SCAN_LEVELS))
    parser.add_argument("--no-oracle", action="store_true", help="skip the methods on the true signals")
    args = parser.parse_args(argv)
    levels = args.levels.split(",")
    unknown = [lv for lv in levels if lv not in SCAN_LEVELS]
    if unknown:
        parser.error(f"unknown level(s) {', '.join(unknown)}; choose of {', '.join(SCAN_LEVELS)}")
    out: dict = {"beats": [], "amps": [], "times": [], "panels": []}
    read_seconds: dict[str, list[float]] = defaultdict(list)
    gaps: dict[str, list[float]] = defaultdict(list)
    import neurokit2  # noqa: F401 - imported before the clock runs, not on the first page's time

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2 warns on short signals; failures are counted
        for label in CLASSES:
            for seed in page_seeds(label, args.seeds):
                for layout in LAYOUTS:
                    truth = None
                    for level in levels:
                        page = make_page(label, seed, layout=layout, scan=SCAN_LEVELS[level])
                        truth = page_truth(page)
                        lap = time.perf_counter()
                        signals = read_source_page(page.jpeg_bytes()).signals
                        read_seconds[level].append(time.perf_counter() - lap)
                        evaluate(signals, truth, layout, level, out)
                    if not args.no_oracle:
                        evaluate(oracle_signals(page), truth, layout, ORACLE, out)
                    if truth["group"] != "AF":
                        for lead, values in truth["lead"].items():
                            gaps["ST in measures' 60-120 ms"].append(abs(values["st_gap_measures"]))
                            gaps["ST in nk's R-off+60-80 ms"].append(abs(values["st_gap_nk"]))
                            if np.isfinite(values["t_peak"]):
                                gaps["T peak vs meta t_mv"].append(abs(values["t_peak"] - page.meta["t_mv"][lead]))
                print(f"  seed {seed} {label:<18} done, {time.perf_counter() - started:6.0f} s", file=sys.stderr)
    out["gaps"] = {k: (float(np.mean(v)), float(np.max(v))) for k, v in gaps.items()}
    report(out, levels + ([] if args.no_oracle else [ORACLE]), read_seconds)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
