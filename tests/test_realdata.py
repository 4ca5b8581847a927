"""Checks on the real public sample in ../shared (skipped where it is absent; never copied)."""
from pathlib import Path

import numpy as np

import pytest

from automl.audit import metadata_audit
from automl.eda import write_report
from features.dataset import CLASSES, scan
from features.imageio import load_image

REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ecg-real-sample"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason=f"real sample not present at {REAL_SAMPLE}"),
]


@pytest.fixture(scope="module")
def manifest():
    return scan(REAL_SAMPLE)


def test_every_real_page_scans_and_decodes(manifest):
    assert manifest.skipped == []
    assert set(manifest.classes) == set(CLASSES)
    assert len(manifest.frame) == 94
    page = load_image(manifest.frame["path"].iloc[0], max_side=1024)
    assert max(page.shape) == 1024 and 0.0 <= page.min() < page.max() <= 1.0


@pytest.mark.slow
def test_audit_flags_the_real_datasets_page_size_shortcut(manifest):
    # In the public dataset most COVID pages are scans of other sizes: the audit must see it.
    result = metadata_audit(manifest.frame)
    assert result.flagged, result.message
    assert result.per_class_recall["Covid_19"] >= 0.8


@pytest.mark.slow
def test_the_data_report_warns_that_layout_predicts_the_class_and_draws_every_pages_panels(manifest, tmp_path):
    summary = write_report(manifest, tmp_path, n_jobs=2)
    layouts = summary["layout_audit"]
    assert layouts["flagged"] and "the page layout predicts the class" in layouts["message"]
    assert "never in Covid_19, MI, Normal" in layouts["message"]  # 6x2 without rhythm strip
    assert layouts["table"]["3x4_rhythm"]["Normal"] == 20
    # Panels come from the printed rows on every page, portrait scans with a dark grid included.
    assert summary["fixed_fraction_pages"] == [] and summary["panels_found_by"] == {"projection": 94}
    assert (tmp_path / "panels.png").stat().st_size > 100_000


REAL_TRAIN = REAL_SAMPLE.with_name("ecg-real-train")


@pytest.mark.slow
@pytest.mark.skipif(not REAL_TRAIN.is_dir(), reason=f"real training pages not present at {REAL_TRAIN}")
def test_the_gate_reads_every_real_sample_page_and_a_half_turned_one_as_upright(manifest):
    """Issue 23's acceptance on real pages: none refused, each half-turned page said to be turned
    and given the class it gets upright (model and gate fitted on the other real pages)."""
    from PIL import Image
    from sklearn.ensemble import HistGradientBoostingClassifier

    from automl.model import ECGModel
    from features.gate import READ, TURNED, PageGate
    from features.handcrafted import PageFeatures

    train = scan(REAL_TRAIN, progress=False).frame
    features = PageFeatures(sets=("signals", "trace"), n_jobs=-1, progress=False)
    classifier = HistGradientBoostingClassifier(random_state=0).fit(
        features.transform([str(p) for p in train["path"]]), train["label"])
    model = ECGModel(features, classifier, classifier.classes_)
    model.gate = PageGate().fit([str(p) for p in train["path"]])
    paths = [str(p) for p in manifest.frame["path"]]
    checks = model.check_pages(paths)
    assert [c.status for c in checks] == [READ] * len(paths), [c for c in checks if c.status != READ]
    # Upright and turned pages from the same decoded pixels: the file itself is decoded at reduced
    # JPEG scale for speed, which alone changes the class of a borderline page or two.
    upright_checks, upright = model.predict_checked([load_image(p, mode="RGB") for p in paths])
    turned_checks, turned = model.predict_checked([np.asarray(Image.open(p).rotate(180)) for p in paths])
    assert [c.status for c in upright_checks] == [READ] * len(paths)
    assert [(c.status, c.orientation) for c in turned_checks] == [(TURNED, "rot180")] * len(paths)
    assert list(turned.argmax(axis=1)) == list(upright.argmax(axis=1))
