"""Pretraining on generated pages, and transfer from its backbone in a search: real Keras, real MLflow,
real Optuna, no download."""
from __future__ import annotations

import time

import numpy as np
import pytest

from automl.engines.backbones import find_backbone, load_backbone, unfreeze_last_blocks
from features.synthetic_tasks import TASKS, page_targets, training_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny signals backbone, made the way `smartecg pretrain` makes them, in its own cache."""
    from automl.pretrain import pretrain

    root = tmp_path_factory.mktemp("pretrain")
    result = pretrain(20, pages=16, validation_pages=10, views=("signals",), width=8, depth=2, batch_size=8,
                      out=root / "backbones", tracking_uri=f"sqlite:///{root / 'mlflow.db'}", progress=False)
    return result, root


def test_targets_come_from_the_generators_truth():
    data, targets = training_page(7)
    assert data[:2] == b"\xff\xd8"  # a JPEG, as a scanner gives
    assert set(targets) == {t.name for t in TASKS}
    old_infarct = page_targets("MI_History", {"st_mv": {"I": 0.0, "V1": -0.1}, "rhythm": "sinus",
                                              "territory": "inferior", "heart_rate": 64.0})
    assert old_infarct["q_waves"] == 1 and old_infarct["territory"] == 2 and old_infarct["rate"] == pytest.approx(0.64)
    assert old_infarct["st"].tolist() == pytest.approx([0.0, 0.1])


def test_pretrain_saves_a_backbone_with_its_recipe_and_logs_it(pretrained):
    import mlflow

    result, root = pretrained
    recipe = find_backbone("signals", root / "backbones").recipe
    assert recipe["pages"] == result.pages == 16 and recipe["validation_pages"] == 10
    assert recipe["validation_seeds"][0] > 16  # validated on pages of another seed range
    assert set(result.validation["signals"]) == {"class_macro_f1", "rhythm_macro_f1", "territory_macro_f1",
                                                 "q_waves_macro_f1", "rate_mae_bpm", "st_mae"}
    assert recipe["epochs"] >= 1 and recipe["steps"] >= 2 and result.seconds < 20 + 20
    model, found = load_backbone("signals", root / "backbones")
    assert model.output_shape == (None, 16) and found.blocks == 2  # width 8 doubled in the second block
    run = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(result.run_id)
    assert run.data.metrics["signals.class_macro_f1"] == pytest.approx(result.validation["signals"]["class_macro_f1"])
    artifacts = {a.path for a in mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}").list_artifacts(
        result.run_id, "backbone/signals")}
    assert {"backbone/signals/backbone.keras", "backbone/signals/recipe.json"} <= artifacts
    logged = mlflow.tensorflow.load_model(run.data.tags["smartecg.model.signals"])  # an MLflow model too
    assert logged.output_shape == model.output_shape


def test_unfreezing_the_last_block_leaves_the_first_frozen(pretrained):
    _, root = pretrained
    model, _ = load_backbone("signals", root / "backbones")
    unfreeze_last_blocks(model, 1)
    trainable = {layer.name.split("_")[0] for layer in model.layers if layer.name.startswith("block") and layer.trainable}
    assert trainable == {"block1"}


def test_a_transfer_trial_starts_from_the_pretrained_backbone_inside_its_slice(pretrained, tmp_path):
    from automl.engines.base import TrainingData
    from automl.engines.networks import backbone_layer
    from automl.engines.optuna_engine import OptunaEngine
    from features.dataset import scan
    from features.synthetic import generate_dataset

    _, root = pretrained
    frame = scan(generate_dataset(tmp_path / "pages", 4, seed=5, progress=False), progress=False).frame
    data = TrainingData(paths=[str(p) for p in frame["path"]], X=np.zeros((len(frame), 1)),
                        y=frame["label"].to_numpy(dtype=object), classes=sorted(set(frame["label"])), features=None,
                        metric="macro_f1", seed=0, workdir=tmp_path / "work", experiment="test-transfer")
    frozen = {"family": "transfer", "backbone": "signals", "unfreeze_blocks": 0, "dropout": 0.1, "learning_rate": 3e-3,
              "batch_size": 8, "class_weights": True, "epochs": 2, "augment": False}
    engine = OptunaEngine(families=("transfer",), backbones=("signals",), min_epochs=1, max_epochs=2, max_trials=1,
                          storage=f"sqlite:///{tmp_path / 'optuna.db'}", study="t", enqueue=[frozen],
                          weights_dir=str(root / "backbones"), candidates=1)
    logged = []
    started = time.monotonic()
    candidates = engine.search(data, 120, lambda t: logged.append(t) or None)
    assert time.monotonic() - started < 120
    assert [t.status for t in logged] == ["ok"], [(t.status, t.error) for t in logged]
    assert "signals backbone" in logged[0].description
    # Frozen throughout: the candidate's backbone holds exactly the pretrained weights.
    network = candidates[0].model.classifier.network
    pretrained_model, _ = load_backbone("signals", root / "backbones")
    for mine, theirs in zip(backbone_layer(network).get_weights(), pretrained_model.get_weights()):
        assert np.array_equal(mine, theirs)
