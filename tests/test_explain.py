"""Explanations: Grad-CAM finds the leads the generator put the infarct in; LIME finds the lead a model reads."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from automl.explain import evidence_phrase
from features.pages import LEADS

CLASSES = ["MI", "Normal"]


def _pages(root, classes=CLASSES):
    metas = [json.loads(line) for line in (root / "synthetic_meta.jsonl").read_text().splitlines()]
    metas = [m for m in metas if m["label"] in classes]
    return [str(root / m["file"]) for m in metas], np.array([classes.index(m["label"]) for m in metas]), metas


def _shares(**shares):
    return {lead: shares.get(lead, 0.0) for lead in LEADS}


def test_the_summary_names_the_fewest_leads_holding_half_the_evidence_and_their_territory():
    assert evidence_phrase(_shares(V2=0.3, V3=0.25, V4=0.2, I=0.05)) == "most evidence in V2, V3 (anterior leads)"
    assert evidence_phrase(_shares(V1=0.22, V2=0.21, V3=0.2, V4=0.19, V5=0.18)) == \
        "most evidence in V1-V3 (anterior leads)"
    assert evidence_phrase(_shares(II=0.22, III=0.2, aVF=0.18, V1=0.1, V2=0.1, V3=0.1, V4=0.1)) == \
        "most evidence in II, III, aVF (inferior leads)"
    assert evidence_phrase(_shares(I=0.25, V2=0.22, V3=0.2, V4=0.18, V1=0.15)) == \
        "most evidence in I, V2, V3 (lateral and anterior leads)"
    # aVR belongs to no territory, so none is named.
    assert evidence_phrase(_shares(V2=0.25, aVR=0.21, V3=0.19, V4=0.15, I=0.1, II=0.1)) == \
        "most evidence in aVR, V2, V3"
    # Evidence spread evenly, or none at all, points at no lead.
    assert evidence_phrase(_shares(**{lead: 1 / 12 for lead in LEADS})) == "no lead stands out"
    assert evidence_phrase(_shares()) == "no lead stands out"


@pytest.fixture(scope="module")
def mi_network(synthetic_train, synthetic_test, tmp_path_factory):
    """A small CNN on the layout-proof lead mosaic, trained to tell MI from Normal pages."""
    from automl.engines.deep_training import configure_tensorflow, train_network
    from automl.engines.keras_model import KerasClassifier
    from automl.engines.networks import build_network
    from automl.model import ECGModel
    from features.tensors import PageTensors

    configure_tensorflow(0)
    train_paths, y_train, _ = _pages(synthetic_train)
    test_paths, y_test, _ = _pages(synthetic_test)
    tensors = PageTensors(view="leads", size=(64, 96), n_jobs=2, cache_dir=tmp_path_factory.mktemp("tensors"))
    network = build_network("cnn", (64, 96, 1), 2, width=16, depth=3, dropout=0.3)
    result = train_network(network, tensors.transform(train_paths), y_train, tensors.transform(test_paths), y_test,
                           metric="macro_f1", epochs=12, batch_size=16, learning_rate=2e-3, seed=0)
    model = ECGModel(PageTensors(view="leads", size=(64, 96)), KerasClassifier(network, 2), CLASSES,
                     engine="optuna", description="cnn")
    return model, result.best_score


@pytest.mark.slow
def test_gradcam_puts_the_evidence_for_mi_in_the_leads_the_infarct_was_drawn_in(mi_network, synthetic_test):
    from automl.explain import explain

    model, score = mi_network
    assert score >= 0.9  # it learned MI: otherwise its evidence means nothing
    ratios, named = [], 0
    paths, _, metas = _pages(synthetic_test, ["MI"])
    for path, meta in zip(paths, metas):
        found = explain(model, path, method="gradcam", class_name="MI")
        assert found.method == "gradcam" and found.detail["gradcam_layer"].startswith("re_lu")
        assert sum(found.lead_shares.values()) == pytest.approx(1.0)
        territory = np.mean([found.lead_shares[lead] for lead in meta["territory_leads"]])
        ratios.append(territory * len(LEADS))  # > 1: more than the average lead's share
        named += any(lead in found.summary for lead in meta["territory_leads"])
    assert np.mean(np.array(ratios) > 1.0) >= 0.8, ratios
    assert np.median(ratios) > 1.3, ratios
    assert named >= 0.8 * len(paths)


@pytest.mark.slow
def test_an_explanation_is_drawn_on_its_page_with_the_evidence_in_the_top_lead(mi_network, synthetic_test, tmp_path):
    from automl.explain import explain
    from automl.overlay import MAX_SIDE, write_overlay

    model, _ = mi_network
    path = _pages(synthetic_test, ["MI"])[0][0]
    found = explain(model, path, method="gradcam")
    assert found.class_name in CLASSES and 0.0 <= found.heat.min() and found.heat.max() == pytest.approx(1.0)
    png = write_overlay(found, path, tmp_path / "page.gradcam.png")
    image = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    assert max(image.shape[:2]) <= MAX_SIDE + 60
    # Colour (red minus blue, the heat's hue) is strongest inside the lead with the largest share.
    top = max(found.lead_shares, key=found.lead_shares.get)
    page_w = found.page.source_size[0]
    scale = min(1.0, MAX_SIDE / max(found.page.source_size))
    x0, y0, x1, y1 = (int(v * scale) for v in found.page.source_boxes[top])
    warmth = image[56:, :, 0] - image[56:, :, 2]
    assert warmth[y0:y1, x0:x1].mean() > warmth.mean() + 10, (top, page_w)
    record = found.to_dict()
    assert record["summary"] == found.summary and set(record["lead_shares"]) == set(LEADS)


@pytest.mark.slow
def test_lime_finds_the_one_lead_a_model_reads(synthetic_train, synthetic_test):
    """A pipeline that reads only V3's measures: LIME must put V3 first, and the summary must say so.

    V3's measures are taken at beats found on all leads at once, so the leads beside it matter a
    little too; none may come near it.
    """
    from automl.explain import explain
    from automl.model import ECGModel
    from features.handcrafted import PageFeatures

    features = PageFeatures(sets=("signals",))
    names = list(features.get_feature_names_out())
    v3 = [i for i, name in enumerate(names) if "V3" in name.split(".")[-1].split("_")]
    assert v3, names[:20]
    paths, y, _ = _pages(synthetic_train)
    X = PageFeatures(sets=("signals",), n_jobs=2).transform(paths)
    reader = ColumnTransformer([("v3", "passthrough", v3)])
    pipeline = make_pipeline(reader, LogisticRegression(max_iter=2000)).fit(X, y)
    model = ECGModel(features, pipeline, CLASSES, engine="tpot", description="V3 only")
    path = _pages(synthetic_test, ["MI"])[0][0]
    found = explain(model, path, method="lime", lime_samples=100, seed=1)
    assert found.method == "lime" and found.detail["lime_samples"] == 100
    ranked = sorted(found.lead_weights, key=lambda lead: -abs(found.lead_weights[lead]))
    assert ranked[0] == "V3", found.lead_weights
    others = [abs(w) for lead, w in found.lead_weights.items() if lead != "V3"]
    assert max(others) < 0.5 * abs(found.lead_weights["V3"]), found.lead_weights
    assert "V3" in found.summary
    with pytest.raises(ValueError, match="Grad-CAM needs a network.*--method lime"):
        explain(model, path, method="gradcam")
    with pytest.raises(ValueError, match="unknown class 'Covid'"):
        explain(model, path, method="lime", class_name="Covid")


def test_the_command_line_knows_every_explanation_method():
    from automl.cli import EXPLAIN_METHODS as shown
    from automl.explain import EXPLAIN_METHODS

    assert shown == EXPLAIN_METHODS
