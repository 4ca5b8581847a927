"""Per-lead signals and the ``signals`` feature set, against the generator's ground truth."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import ImageDraw

from features.handcrafted import FEATURE_SETS, blank_page, feature_length, feature_names
from features.measures import measures_of
from features.pages import LEADS, RHYTHM, normalise_page
from features.synthetic import CLASSES, FS, LAYOUTS, PAGE_SIZE, make_page
from features.traces import SIGNAL_SIZE, LeadSignals, lead_signals, signal_matrix

# Two seeds of every class in both layouts: sizes 0.5-1x, rotations up to 1.5 deg, blur, JPEG.
PAGES = [(label, seed, layout) for seed in (0, 1) for label in CLASSES for layout in LAYOUTS]
NAMES = feature_names("signals")


@pytest.fixture(scope="module")
def pages():
    """(ground truth, the page normalised at SIGNAL_SIZE, its signals) for each of PAGES."""
    out = []
    for label, seed, layout in PAGES:
        truth = make_page(label, seed, layout=layout)
        page = normalise_page(truth.image, size=SIGNAL_SIZE)
        assert (page.layout, page.rhythm) == (layout, layout == "3x4"), (label, seed, layout)
        out.append((truth, page, lead_signals(page)))
    return out


def seen_per_column(truth, signals: LeadSignals, lead: str) -> np.ndarray:
    """The generator's signal of ``lead`` averaged over each page column's slice of time."""
    signal = truth.signals["II" if lead == RHYTHM else lead]
    n = len(signals.mv[lead])
    edges = ((signals.start_seconds[lead] + np.arange(n + 1) / signals.samples_per_second) * FS).astype(int)
    edges = edges.clip(0, len(signal))
    return np.array([signal[a:max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:])])


def median_amplitude_ratio(truth, signals: LeadSignals) -> float:
    """Median over leads of the read peak-to-peak amplitude over the true one (as columns show it)."""
    return float(np.median([np.ptp(signals.mv[lead]) / np.ptp(seen_per_column(truth, signals, lead))
                            for lead in LEADS]))


def value(vector: np.ndarray, name: str) -> float:
    return float(vector[NAMES.index(f"signals_{name}")])


def lead_values(vector: np.ndarray, measure: str) -> np.ndarray:
    return np.array([value(vector, f"{lead}_{measure}") for lead in LEADS])


def test_every_lead_correlates_with_the_generators_signal(pages):
    # The acceptance: median Pearson r >= 0.9 per lead. On these pages read at 320x512
    # instead, II, III and V1-V6 stay below it (V4 0.82): this test can fail.
    r = {lead: [] for lead in LEADS}
    for truth, _, signals in pages:
        for lead in LEADS:
            r[lead].append(np.corrcoef(signals.mv[lead], seen_per_column(truth, signals, lead))[0, 1])
    medians = {lead: round(float(np.median(values)), 3) for lead, values in r.items()}
    assert min(medians.values()) >= 0.9, medians


def test_signals_have_one_sample_per_column_and_the_rhythm_strip_spans_the_page(pages):
    for truth, page, signals in pages:
        assert set(signals.mv) == set(page.lead_boxes)
        assert all(mv.dtype == np.float32 for mv in signals.mv.values())
        columns_per_lead = len(signals.mv["I"])
        assert columns_per_lead == pytest.approx(0.9 * SIGNAL_SIZE[1] / (4 if page.layout == "3x4" else 2), abs=1)
        assert signals.samples_per_second == SIGNAL_SIZE[1] / 10
        if page.rhythm:
            assert len(signals.mv[RHYTHM]) == pytest.approx(SIGNAL_SIZE[1] - 0.1 * SIGNAL_SIZE[1] / 4, abs=1)
            assert np.corrcoef(signals.mv[RHYTHM], seen_per_column(truth, signals, RHYTHM))[0, 1] > 0.8


def test_the_calibration_pulse_gives_the_millivolt_scale(pages):
    calibrated = [signals.calibrated for _, _, signals in pages]
    # pages.py misses the pulses of one blurred, rotated page here (seed 1 Normal 3x4).
    assert np.mean(calibrated) >= 0.9, calibrated
    ratios = [median_amplitude_ratio(truth, signals) for truth, _, signals in pages if signals.calibrated]
    # Peaks come out a little low (the ink's centre in a column at a spike sits below its tip).
    assert abs(np.median(ratios) - 1) <= 0.15, np.round(ratios, 3)


def test_without_a_pulse_the_standard_paper_scale_is_close(pages):
    ratios = []
    for truth, page, signals in pages:
        if signals.calibrated:
            assumed = lead_signals(dataclasses.replace(page, px_per_mv=0.0))
            assert not assumed.calibrated
            assert assumed.px_per_mv == pytest.approx(signals.px_per_mv, rel=0.1)
            ratios.append(median_amplitude_ratio(truth, assumed))
    assert abs(np.median(ratios) - 1) <= 0.25, np.round(ratios, 3)


def without_pulses(truth):
    """The page with its calibration pulses painted white (left of each row's first panel)."""
    image = truth.image.copy()
    draw = ImageDraw.Draw(image)
    scale = image.width / PAGE_SIZE[0]
    first_column = [box for lead, box in truth.lead_boxes.items() if box[0] < 0.2 * image.width]
    for x0, y0, x1, y1 in first_column:
        baseline, pitch = (y0 + y1) / 2, y1 - y0
        draw.rectangle([x0 - 60 * scale, baseline - 0.45 * pitch, x0 - 8 * scale, baseline + 0.06 * pitch],
                       fill="white")
    return image


@pytest.mark.parametrize(("label", "seed", "layout"), [("Normal", 11, "3x4"), ("MI", 9, "6x2")])
def test_a_page_whose_pulses_are_erased_falls_back_to_the_standard_scale(label, seed, layout):
    # Unrotated pages whose rows pages.py still finds from the traces alone.
    truth = make_page(label, seed, layout=layout)
    intact = lead_signals(normalise_page(truth.image, size=SIGNAL_SIZE))
    page = normalise_page(without_pulses(truth), size=SIGNAL_SIZE)
    assert (page.layout, page.rhythm) == (layout, layout == "3x4")
    signals = lead_signals(page)
    assert intact.calibrated and not signals.calibrated
    assert signals.px_per_mv == pytest.approx(intact.px_per_mv, rel=0.1)
    assert abs(median_amplitude_ratio(truth, signals) - 1) <= 0.25


def test_signal_matrix_resamples_each_lead_to_one_length():
    ramp = np.arange(461, dtype=np.float32)  # a 6x2 lead at 1024 columns: 4.5 s
    signals = LeadSignals(mv={lead: ramp + i for i, lead in enumerate(LEADS)}, start_seconds=dict.fromkeys(LEADS, 0.5),
                          samples_per_second=102.4, px_per_mv=40.0, calibrated=True)
    whole = signal_matrix(signals, length=100, seconds=None)
    assert whole.shape == (12, 100) and whole.dtype == np.float32
    np.testing.assert_allclose(whole[3] - whole[0], 3.0, atol=1e-3)  # rows in LEADS order
    assert whole[0, 0] == pytest.approx(1.805, abs=0.01) and whole[0, -1] == pytest.approx(458.195, abs=0.01)
    # By default only the first 2.25 s, as a 3x4 panel shows: the same time scale in every layout.
    first = signal_matrix(signals, length=100)
    assert first[0, -1] == pytest.approx(2.25 * 102.4, abs=2.0)


def test_the_signals_set_has_one_length_and_is_zero_on_blank_pages():
    assert FEATURE_SETS["signals"].size == SIGNAL_SIZE
    assert len(NAMES) == feature_length("signals") == 12 * 5 + 4
    assert NAMES[0] == "signals_I_r_mv" and NAMES[-1] == "signals_widest_qrs_ms"
    for layout, rhythm in (("3x4", True), ("6x2", False)):
        for size in (SIGNAL_SIZE, (320, 512), (6, 8)):
            vector = FEATURE_SETS["signals"].function(blank_page(size, layout, rhythm))
            assert vector.shape == (len(NAMES),) and vector.dtype == np.float32
            assert not vector.any()


def test_rate_is_the_generators_on_regular_pages(pages):
    for truth, _, signals in pages:
        rate = value(measures_of(signals), "rate_bpm")
        if truth.meta["rhythm"] == "sinus":
            assert rate == pytest.approx(truth.meta["heart_rate"], abs=10), truth.meta
        else:  # atrial fibrillation: the generator's rate is the mean of a skewed RR draw
            assert rate == pytest.approx(truth.meta["heart_rate"], rel=0.2), truth.meta


def test_fibrillation_is_irregular_and_sinus_is_not(pages):
    cv = {truth.meta["rhythm"]: [] for truth, _, _ in pages}
    for truth, _, signals in pages:
        cv[truth.meta["rhythm"]].append(value(measures_of(signals), "rr_cv"))
    assert min(cv["atrial_fibrillation"]) > 0.1 > max(cv["sinus"]), cv


def test_ectopic_beats_are_wide_and_sinus_beats_narrow(pages):
    # The generator's premature ventricular beats are Gaussians of sd 35 ms; its sinus QRS lasts
    # about 80 ms, except where MI_History widens it with a pathological Q (tested below).
    sinus = [value(measures_of(s), "widest_qrs_ms") for t, _, s in pages if t.label in ("Normal", "Covid_19", "MI")]
    ectopic = []
    for seed in (6, 12):
        truth = make_page("Abnormal_HeartBeat", seed)
        assert truth.meta["rhythm"] == "ventricular_ectopics"
        ectopic.append(value(FEATURE_SETS["signals"].function(normalise_page(truth.image, size=SIGNAL_SIZE)),
                             "widest_qrs_ms"))
    assert max(sinus) < 120 < min(ectopic), (sinus, ectopic)


def test_infarct_leads_show_what_the_generator_draws(pages):
    for truth, _, signals in pages:
        if truth.label not in ("MI", "MI_History"):
            continue
        vector = measures_of(signals)
        territory = np.isin(LEADS, truth.meta["territory_leads"])
        st, q, t, qrs = (lead_values(vector, m) for m in ("st_mv", "q_mv", "t_mv", "qrs_ms"))
        if truth.label == "MI":  # ST elevation (0.15-0.4 mV) and hyperacute T in the territory
            assert st[territory].mean() > st[~territory].mean() + 0.05, (truth.meta["territory"], st.round(2))
            assert t[territory].mean() > t[~territory].mean(), (truth.meta["territory"], t.round(2))
        else:  # deep, wide (sd 16-22 ms, 50-67 ms before R) Q waves and inverted T in the territory
            assert q[territory].mean() > q[~territory].mean() + 0.1, (truth.meta["territory"], q.round(2))
            assert qrs[territory].mean() > qrs[~territory].mean() + 20, (truth.meta["territory"], qrs.round())
            assert t[territory].mean() < min(0.0, t[~territory].mean()), (truth.meta["territory"], t.round(2))


def test_covid_pages_have_lower_voltage_than_normal_ones(pages):
    r_mv = {label: [] for label in CLASSES}
    for truth, _, signals in pages:
        r_mv[truth.label].append(np.median(lead_values(measures_of(signals), "r_mv")))
    assert np.mean(r_mv["Covid_19"]) < 0.8 * np.mean(r_mv["Normal"]), r_mv


def test_the_trace_set_reads_through_the_shared_reader(pages):
    # trace's values were checked identical before and after the reader moved (commit message);
    # here: its baselines are the median levels traces.read_traces gives at the trace set's size.
    from features.traces import label_skip, read_traces

    names = feature_names("trace")
    for truth, _, _ in pages[:4]:
        page = normalise_page(truth.image)
        vector = FEATURE_SETS["trace"].function(page)
        levels = read_traces(page.image, [page.lead_boxes[lead] for lead in LEADS], label_skip(page)).level
        baselines = [vector[names.index(f"trace_{lead}_baseline")] for lead in LEADS]
        np.testing.assert_allclose(baselines, np.median(levels, axis=1), rtol=1e-6, atol=1e-7)
