"""The fast array kernels of features.pages agree with the plain definitions they replace."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from features import pages


@pytest.fixture(params=[0, 1, 2])
def mask(request) -> np.ndarray:
    rng = np.random.default_rng(request.param)
    dense = rng.random((61, 47)) > 0.55  # long and short runs, runs touching every edge
    dense[5:50, 10] = True
    dense[20, 3:45] = True
    return dense


def _runs_by_scan(mask: np.ndarray) -> set[tuple[int, int, int]]:
    runs = set()
    for x in range(mask.shape[1]):
        y = 0
        while y < mask.shape[0]:
            if mask[y, x]:
                start = y
                while y < mask.shape[0] and mask[y, x]:
                    y += 1
                runs.add((x, start, y))
            y += 1
    return runs


def test_column_runs_lists_every_vertical_run(mask):
    column, start, stop = pages._column_runs(mask)
    assert set(zip(column.tolist(), start.tolist(), stop.tolist())) == _runs_by_scan(mask)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("length", [1, 4, 9, 40])
def test_runs_at_least_keeps_exactly_the_pixels_of_long_runs(mask, axis, length):
    expected = np.zeros_like(mask)
    along = mask if axis == 0 else mask.T
    target = expected if axis == 0 else expected.T
    for x, start, stop in _runs_by_scan(along):
        if stop - start >= length:
            target[start:stop, x] = True
    assert np.array_equal(pages._runs_at_least(mask, length, axis), expected)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("size", [3, 5])
def test_dilate_equals_a_maximum_filter(mask, axis, size):
    assert np.array_equal(pages._dilate(mask, size, axis), ndimage.maximum_filter1d(mask, size, axis=axis))


def test_percentiles_equal_numpys_on_8_bit_pages_and_stay_close_on_deeper_ones():
    rng = np.random.default_rng(3)
    eight_bit = (rng.integers(0, 256, (37, 29)) / 255.0).astype(np.float32)
    deep = rng.random((37, 29)).astype(np.float32)
    for qs in [(0.5, 90.0), (0.0, 100.0), (50.0,)]:
        assert np.allclose(pages._percentiles(eight_bit, qs), np.percentile(eight_bit, qs), atol=1e-6)
        assert np.allclose(pages._percentiles(deep, qs), np.percentile(deep, qs), atol=1 / 255)


def test_deskew_agrees_with_the_exact_rotation_nearly_everywhere():
    """Pillow's transform and the numpy rotation may round ties differently, nothing more."""
    h, w = 120, 170
    index = np.arange(1, h * w + 1, dtype=np.float32).reshape(h, w)
    slope, centre = 0.03, (w / 2, h / 2)
    rotated = pages._deskew(index, slope, centre)
    x, y = pages._frame_to_source((np.arange(w) + 0.5)[None, :], (np.arange(h) + 0.5)[:, None], slope, centre)
    xs, ys = np.floor(x).astype(int), np.floor(y).astype(int)
    inside = (xs >= 1) & (xs < w - 1) & (ys >= 1) & (ys < h - 1)
    source_y, source_x = np.divmod(rotated[inside].astype(np.int64) - 1, w)
    assert np.abs(source_y - ys[inside]).max() <= 1 and np.abs(source_x - xs[inside]).max() <= 1
    assert np.mean((source_y == ys[inside]) & (source_x == xs[inside])) > 0.98


def test_two_pass_resampling_matches_a_2d_bilinear_interpolation():
    rng = np.random.default_rng(4)
    ink = ndimage.uniform_filter(rng.random((90, 130)).astype(np.float32), 5)
    geometry = pages.PageGeometry("3x4", True, (10.0, 8.0, 120.0, 80.0), 0.02, (65.0, 45.0), "projection")
    ys = pages._frame_y(geometry, np.arange(40) + 0.5, 40) - 0.5
    xs = pages._frame_x(geometry, np.arange(60) + 0.5, 60) - 0.5
    fast = pages._resample(ink, geometry, ys, xs)
    x, y = pages._frame_to_source((xs + 0.5)[None, :], (ys + 0.5)[:, None], geometry.slope, geometry.centre)
    exact = ndimage.map_coordinates(ink, [y - 0.5, x - 0.5], order=1, mode="nearest")
    assert fast.dtype == np.float32
    assert np.abs(fast - exact).max() < 0.005  # the two passes differ from 2D bilinear by ~3e-4 here
