"""Every network family builds on page tensors; transfer learning reads local weights, never downloads."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # imports TensorFlow and builds EfficientNetB0 (seconds)

IMAGE = (32, 48, 1)
SIGNALS = (128, 12)


@pytest.mark.parametrize("family", ["cnn", "resnet", "vgg", "efficientnet", "conv1d"])
def test_each_family_gives_class_probabilities(family):
    from automl.engines.networks import build_network

    shape = SIGNALS if family == "conv1d" else IMAGE
    network = build_network(family, shape, 5, width=8, depth=2, dropout=0.1)
    proba = network.predict(np.random.default_rng(0).random((3, *shape), dtype=np.float32), verbose=0)
    assert proba.shape == (3, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_a_family_refuses_the_other_kind_of_input():
    from automl.engines.networks import build_network

    with pytest.raises(ValueError, match=r"conv1d needs \(length, leads\) signals"):
        build_network("conv1d", IMAGE, 5)
    with pytest.raises(ValueError, match=r"cnn needs \(H, W, 1\) pages"):
        build_network("cnn", SIGNALS, 5)


def test_transfer_loads_weights_from_the_given_folder_and_starts_frozen(tmp_path):
    import keras

    from automl.engines.networks import build_network

    # A stand-in for the ImageNet file: same name and architecture, weights of a seeded init.
    keras.utils.set_random_seed(3)
    source = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 48, 3),
                                               pooling="avg")
    _save_legacy_h5(source, tmp_path / "efficientnetb0_notop.h5")
    network = build_network("transfer", IMAGE, 5, weights_dir=tmp_path)
    (backbone,) = [layer for layer in network.layers if isinstance(layer, keras.Model)]
    assert not backbone.trainable  # frozen first; train_network unfreezes it to fine-tune
    for loaded, saved in zip(backbone.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(loaded, saved)


def test_transfer_without_weights_says_where_it_looked_in_one_line(tmp_path, monkeypatch):
    from automl.engines.networks import WeightsUnavailable, build_network

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    with pytest.raises(WeightsUnavailable) as caught:
        build_network("transfer", IMAGE, 5, weights_dir=tmp_path / "none")
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "none") in message and "--weights-dir" in message


def _save_legacy_h5(model, path) -> None:
    """Weights in Keras's legacy HDF5 layout, the layout of the files keras.applications downloads."""
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(path, "w") as handle:
        save_weights_to_hdf5_group(handle, model)


@pytest.mark.parametrize("fine_tune_after, epochs_run", [(None, 3), (4, 6)])
def test_training_stops_after_patience_epochs_without_a_better_score(fine_tune_after, epochs_run):
    """A network that cannot improve (all frozen) stops ``patience`` epochs after its best;
    epochs before fine-tuning begins do not count against it."""
    from automl.engines.deep_training import train_network
    from automl.engines.networks import build_network

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 64, 12)).astype(np.float32), np.repeat(np.arange(5), 4)
    network = build_network("conv1d", (64, 12), 5, width=4, depth=1)
    network.trainable = False  # nothing moves, batch norm included: every epoch scores the same
    result = train_network(network, x, y, x, y, metric="macro_f1", epochs=10, fine_tune_after=fine_tune_after,
                           unfreeze=lambda net: None, patience=2)
    assert result.stopped_early and len(result.epochs) == epochs_run and result.best_epoch == 0
