"""Checks on the real public sample in ../shared (skipped where it is absent; never copied)."""
from pathlib import Path

import pytest

from automl.audit import metadata_audit
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
