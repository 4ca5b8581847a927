"""features.peaks.find_peaks gives scipy.signal.find_peaks's peaks, plateaus and ties included."""
import numpy as np
import pytest
from scipy.signal import find_peaks as scipy_find_peaks

from features.peaks import find_peaks


def _signals():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 400))
        yield rng.integers(0, 6, size=n).astype(float)  # few levels: plateaus and equal heights everywhere
        yield rng.normal(size=n)
    t = np.linspace(0, 10, 5000)
    yield np.abs(np.sin(2 * np.pi * 1.2 * t)) ** 8 + 0.01 * rng.normal(size=t.size)  # a beat-like train
    yield np.array([0.0, 1.0, np.nan, 1.0, 0.0, 2.0, 2.0, 0.0, 1.0, 1.0])  # NaN, a plateau, a plateau at the end


@pytest.mark.parametrize("distance", [None, 1, 1.5, 3, 7.2, 40])
def test_the_same_peaks_as_scipy(distance):
    for x in _signals():
        expected, _ = scipy_find_peaks(x, distance=distance)
        got, _ = find_peaks(x, distance=distance)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), (x, distance)


def test_a_distance_below_one_sample_is_refused_as_scipy_refuses_it():
    with pytest.raises(ValueError, match="distance"):
        find_peaks(np.arange(5.0), distance=0.5)
