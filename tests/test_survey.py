"""Page survey (layout, grid, size bucket, panels) and the layout audit built on it."""
from __future__ import annotations

import numpy as np
import pytest

from automl.audit import layout_audit
from features.survey import PANELS, size_bucket, survey_pages
from features.synthetic import make_page


def test_every_layout_of_the_generator_is_named_and_its_panels_found():
    pages = [make_page("MI", 1).image, make_page("MI", 2, layout="6x2").image,
             make_page("Normal", 3, layout="6x2", grid=False).image]
    survey = survey_pages([np.asarray(p.convert("L")) for p in pages])
    assert survey["layout"].tolist() == ["3x4_rhythm", "6x2", "6x2_gridless"]
    assert survey["found_by"].tolist() == ["projection"] * 3
    assert set(survey["boxes"][0]) == set(PANELS) and set(survey["boxes"][1]) == set(PANELS[:12])
    for page, record in zip(pages, survey.itertuples()):
        assert (record.width, record.height) == page.size
        assert all(0 <= b[0] < b[2] <= page.width and 0 <= b[1] < b[3] <= page.height for b in record.boxes.values())


def test_survey_rows_are_cached_like_feature_rows(tmp_path):
    path = tmp_path / "page.jpg"
    make_page("Covid_19", 4, layout="6x2").image.save(path)
    first = survey_pages([str(path)], cache_dir=tmp_path / "cache")
    assert any((tmp_path / "cache").rglob("*"))
    again = survey_pages([str(path)], cache_dir=tmp_path / "cache")
    assert again.drop(columns="boxes").equals(first.drop(columns="boxes"))
    assert list(again["boxes"][0]) == list(first["boxes"][0])
    assert np.allclose(list(again["boxes"][0].values()), list(first["boxes"][0].values()), atol=0.5)


@pytest.mark.parametrize(("size", "bucket"), [((2213, 1572), "landscape_ge2000"), ((952, 1232), "portrait_1000-1499"),
                                              ((1496, 1156), "landscape_1000-1499"), ((800, 600), "landscape_lt1000")])
def test_page_size_buckets(size, bucket):
    assert size_bucket(*size) == bucket


def test_the_layout_audit_warns_when_a_layout_only_appears_in_some_classes():
    # The public dataset's pattern: Normal pages always 3x4, 6x2 only in abnormal classes.
    labels = ["Normal"] * 20 + ["MI"] * 20 + ["MI_History"] * 20
    layouts = ["3x4_rhythm"] * 20 + ["6x2"] * 8 + ["3x4_rhythm"] * 12 + ["6x2"] * 10 + ["3x4_rhythm"] * 10
    result = layout_audit(labels, layouts)
    assert result.flagged and result.p_value <= 0.01 and result.cramers_v > 0.3
    assert "6x2 never in Normal" in result.message and result.message.startswith("WARNING")
    assert result.table["6x2"] == {"MI": 8, "MI_History": 10, "Normal": 0}


def test_the_layout_audit_stays_quiet_when_layouts_are_spread_evenly():
    rng = np.random.default_rng(0)
    labels = np.repeat(["Normal", "MI", "MI_History"], 40)
    layouts = rng.choice(["3x4_rhythm", "6x2"], size=len(labels))
    result = layout_audit(labels, layouts)
    assert not result.flagged and result.message.startswith("OK")


def test_one_layout_cannot_predict_anything():
    result = layout_audit(["MI", "Normal"], ["3x4_rhythm", "3x4_rhythm"])
    assert not result.flagged and "one layout" in result.message
