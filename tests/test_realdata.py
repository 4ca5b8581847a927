"""Checks on the real public sample in ../shared (skipped where it is absent; never copied)."""
from pathlib import Path

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
