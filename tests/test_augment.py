import numpy as np
import pytest

from features.augment import Augmentation

OFF = dict(rotation_deg=0.0, scale=0.0, shift=0.0, contrast=0.0)


def traces(n: int = 6, size: tuple[int, int] = (64, 96)) -> np.ndarray:
    """(n, H, W, 1) with ink 1 on paper 0: a few wavy thin traces per image, like a lead mosaic."""
    height, width = size
    rows = np.arange(height)[:, None]
    columns = np.arange(width)[None, :]
    out = np.zeros((n, height, width, 1), dtype=np.float32)
    for i in range(n):
        for level in (0.2, 0.5, 0.8):
            centre = level * height + 4 * np.sin(columns / (3 + i) + level * 7)
            out[i, :, :, 0] = np.maximum(out[i, :, :, 0], np.clip(1.2 - np.abs(rows - centre), 0, 1))
    return out


def signals(n: int = 5, length: int = 96) -> np.ndarray:
    t = np.arange(length)[None, :, None]
    return ((np.sin(t / 5.0 + np.arange(12)[None, None, :]) + 1.5) * np.arange(1, n + 1)[:, None, None]).astype(np.float32)


def test_all_zero_is_the_identity():
    identity = Augmentation(**OFF)
    assert identity.is_identity and not Augmentation().is_identity
    images, series = traces(), signals()
    np.testing.assert_array_equal(identity.apply(images, np.random.default_rng(0)), images)
    np.testing.assert_array_equal(identity.apply(series, np.random.default_rng(0)), series)


def test_rotation_moves_ink_but_keeps_its_amount():
    images = traces()
    out = Augmentation(**{**OFF, "rotation_deg": 5.0}).apply(images, np.random.default_rng(1))
    moved = np.abs(out - images).mean(axis=(1, 2, 3))
    # Angles are drawn from [-5, 5] degrees: most images turn enough to move thin traces off themselves.
    assert np.median(moved) > 0.03 and moved.max() > 0.05, moved
    ratio = out.sum(axis=(1, 2, 3)) / images.sum(axis=(1, 2, 3))
    assert np.all(np.abs(ratio - 1) < 0.1), ratio


def test_shift_and_zoom_move_the_ink_centre_within_their_bounds():
    images = traces(20)
    rows = np.arange(64)[None, :, None, None]

    def centre_row(batch):
        return (batch * rows).sum(axis=(1, 2, 3)) / batch.sum(axis=(1, 2, 3))

    shifted = Augmentation(**{**OFF, "shift": 0.1}).apply(images, np.random.default_rng(2))
    moved = centre_row(shifted) - centre_row(images)
    assert np.abs(moved).max() <= 0.1 * 64 + 1 and np.abs(moved).max() > 2, moved  # up to 6.4 rows
    zoomed = Augmentation(**{**OFF, "scale": 0.2}).apply(images, np.random.default_rng(3))
    spread = zoomed.std(axis=(1, 2, 3)) / images.std(axis=(1, 2, 3))
    assert not np.allclose(spread, 1.0, atol=0.02)


def test_outputs_are_float32_in_range_and_of_the_same_shape():
    images = traces().astype(np.float64) * 0.97  # dark ink: a gain above 1 must clip, not overflow
    out = Augmentation(rotation_deg=10, scale=0.2, shift=0.2, contrast=0.5).apply(images, np.random.default_rng(4))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() == 1.0
    assert np.isclose(out[:, :3, :3].max(), 0.0)  # corners rotated in from outside are paper


def test_the_same_seed_gives_the_same_batch():
    augmentation, images = Augmentation(), traces()
    first = augmentation.apply(images, np.random.default_rng(7))
    np.testing.assert_array_equal(first, augmentation.apply(images, np.random.default_rng(7)))
    assert not np.array_equal(first, augmentation.apply(images, np.random.default_rng(8)))


def test_signals_get_a_time_shift_and_a_gain_only():
    series = signals()
    shifted = Augmentation(**{**OFF, "shift": 0.1}).apply(series, np.random.default_rng(5))
    for before, after in zip(series, shifted):
        lags = [lag for lag in range(-10, 11)
                if np.array_equal(after[max(lag, 0):len(after) + min(lag, 0)], before[max(-lag, 0):len(before) - max(lag, 0)])]
        assert len(lags) == 1, lags  # a pure shift by whole samples, the ends held
    gained = Augmentation(**{**OFF, "scale": 0.1, "contrast": 0.5, "rotation_deg": 10.0}).apply(
        series, np.random.default_rng(6))
    ratio = gained / series
    per_item = ratio.reshape(len(series), -1)
    np.testing.assert_allclose(per_item, np.broadcast_to(per_item[:, :1], per_item.shape), rtol=1e-5)  # one gain per item, all leads alike
    assert np.all(np.abs(per_item[:, 0] - 1) <= 0.1) and not np.allclose(per_item[:, 0], 1.0)


@pytest.mark.parametrize(("options", "error", "message"), [
    (dict(rotation_deg=-1.0), ValueError, "rotation_deg must be 0 or more"),
    (dict(scale=-0.05), ValueError, "scale must be 0 or more"),
    (dict(shift=float("nan")), ValueError, "shift must be 0 or more"),
    (dict(contrast=20), ValueError, r"contrast=20 is more than 0.9; contrast is a share, 0.05 for 5%"),
    (dict(rotation_deg=90), ValueError, "is more than 45.0; rotation_deg is in degrees"),
    (dict(shift="0.1"), TypeError, "shift must be a number"),
])
def test_bad_options_are_refused_with_a_clear_message(options, error, message):
    with pytest.raises(error, match=message):
        Augmentation(**options)


def test_batches_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r"expected images \(n, H, W, 1\) or signals"):
        Augmentation().apply(np.zeros((2, 64, 96, 3)), np.random.default_rng(0))
