import pytest

from automl.audit import metadata_audit
from features.dataset import scan


@pytest.mark.slow
def test_metadata_audit_stays_near_chance_on_default_synthetic_pages(synthetic_train):
    result = metadata_audit(scan(synthetic_train).frame)
    assert not result.flagged, result.message
    assert result.balanced_accuracy < result.chance + 0.1
    assert result.message.startswith("OK")


@pytest.mark.slow
def test_metadata_audit_flags_the_covid_page_size_confound(synthetic_confounded):
    result = metadata_audit(scan(synthetic_confounded).frame)
    assert result.flagged
    assert result.p_value <= 0.05
    assert result.per_class_recall["Covid_19"] >= 0.9
    assert "Covid_19" in result.message and "WARNING" in result.message


def test_audit_says_it_was_skipped_when_there_is_too_little_data(tiny_synthetic):
    frame = scan(tiny_synthetic).frame
    one_each = frame.groupby("label").head(1)
    result = metadata_audit(one_each)
    assert not result.flagged and "skipped" in result.message
