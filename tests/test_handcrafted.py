import json
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import features.extract
from features.cache import FeatureCache, config_hash
from features.dataset import scan
from features.handcrafted import FEATURE_SETS, PageFeatures, blank_page, feature_length, feature_names, hog
from features.imageio import ImageReadError
from features.extract import read_page
from features.pages import LEADS, normalise_page
from features.source_traces import SOURCE_RESOLUTION, blank_source_page

ALL_SETS = tuple(name for name in FEATURE_SETS if name != "embed")  # embed needs a backbone: test_embed.py


def paths_and_labels(root):
    frame = scan(root, progress=False).frame
    return [str(p) for p in frame["path"]], frame["label"].to_numpy()


@pytest.fixture
def count_normalisations(monkeypatch):
    """Count the pages extract.py decodes and normalises (the real function still does the work)."""
    calls = []

    def counting(source, *args, **kwargs):
        calls.append(source)
        return normalise_page(source, *args, **kwargs)

    monkeypatch.setattr(features.extract, "normalise_page", counting)
    return calls


def some_pages(tiny_synthetic, size=None):
    """The same synthetic page at three sizes and aspects, blank and flat pages, a tiny output size.

    Read as a set of ``size`` reads them: normalised, or at the source's resolution.
    """
    path = paths_and_labels(tiny_synthetic)[0][0]
    full = Image.open(path).convert("RGB")
    sources = {
        "full": np.asarray(full),
        "half": np.asarray(full.resize((full.width // 2, full.height // 2))),
        "portrait": np.asarray(full.resize((950, 1230))),
        "white": np.full((1572, 2213), 255, dtype=np.uint8),
        "noise": np.random.default_rng(0).random((300, 400)),
        "black": np.zeros((200, 300), dtype=np.uint8),
    }
    if size == SOURCE_RESOLUTION:
        pages = {name: read_page(array, size) for name, array in sources.items()}
        pages["blank-6x2"] = blank_source_page(layout="6x2", rhythm=False)
        return pages
    pages = {name: normalise_page(array) for name, array in sources.items()}
    pages["tiny-size"] = normalise_page(sources["full"], size=(6, 8))
    pages["blank-6x2"] = blank_page(layout="6x2", rhythm=False)
    return pages


@pytest.mark.parametrize("name", ALL_SETS)
def test_each_set_has_one_length_for_every_page_and_no_nan(tiny_synthetic, name):
    version, function, size = FEATURE_SETS[name]
    assert isinstance(version, int) and (size is None or len(size) == 2)
    for label, page in some_pages(tiny_synthetic, size).items():
        vector = function(page)
        assert vector.dtype == np.float32 and vector.shape == (feature_length(name),), label
        assert np.isfinite(vector).all(), label
    assert len(feature_names(name)) == feature_length(name)


def test_a_blank_page_has_no_trace_and_a_drawn_page_has_one(tiny_synthetic):
    names = feature_names("trace")
    blank = FEATURE_SETS["trace"].function(blank_page())
    assert not blank.any()
    drawn = FEATURE_SETS["trace"].function(normalise_page(paths_and_labels(tiny_synthetic)[0][0]))
    assert all(drawn[names.index(f"trace_{lead}_amplitude")] > 0.05 for lead in LEADS)
    assert drawn[names.index("trace_rhythm_beats")] >= 5


def test_trace_rate_follows_the_drawn_heart_rate(tiny_synthetic):
    meta = [json.loads(line) for line in open(tiny_synthetic / "synthetic_meta.jsonl")]
    rates = PageFeatures(sets=("trace",)).fit([]).transform([tiny_synthetic / m["file"] for m in meta])
    bpm = 6.0 * rates[:, list(feature_names("trace")).index("trace_rhythm_rate")]  # beats per 10 s
    error = np.abs(bpm - np.array([m["heart_rate"] for m in meta]))
    assert np.median(error) < 5 and np.mean(error < 15) >= 0.8, error.round(1)


def test_same_input_twice_gives_identical_rows_and_bytes_match_paths(tiny_synthetic):
    paths = paths_and_labels(tiny_synthetic)[0][:4]
    extractor = PageFeatures(sets=ALL_SETS)
    first = extractor.transform(paths)
    assert first.dtype == np.float32 and first.shape == (4, sum(feature_length(n) for n in ALL_SETS))
    assert np.array_equal(first, extractor.transform(paths))
    as_bytes = [open(p, "rb").read() for p in paths]
    assert np.array_equal(first, extractor.transform(as_bytes))
    assert np.array_equal(first, extractor.transform(pd.Series(paths)))
    assert np.array_equal(first, extractor.transform(np.array(paths, dtype=object)[:, None]))


def test_feature_names_match_the_columns():
    extractor = PageFeatures(sets=("hog_leads", "trace"))
    names = extractor.get_feature_names_out()
    assert len(names) == feature_length("hog_leads") + feature_length("trace")
    assert names[0] == "hog_leads_0000" and "trace_V2_amplitude" in names and names[-1] == "trace_rhythm_beats"
    assert len(set(names)) == len(names)


def test_bad_configuration_and_input_fail_before_any_page_is_read():
    with pytest.raises(ValueError, match="unknown or no feature sets"):
        PageFeatures(sets=("hog_leads", "colour")).fit(["x.jpg"])
    with pytest.raises(TypeError, match="single str"):
        PageFeatures().transform("page.jpg")
    with pytest.raises(TypeError, match=r"X\[1\] is a int"):
        PageFeatures().transform(["page.jpg", 3])


@pytest.mark.slow
def test_pipeline_pickles_and_classifies_pages_it_never_saw(synthetic_train, synthetic_test):
    train, y_train = paths_and_labels(synthetic_train)
    test, y_test = paths_and_labels(synthetic_test)
    model = make_pipeline(PageFeatures(sets=("trace",), n_jobs=2), StandardScaler(),
                          LogisticRegression(max_iter=2000))
    model.fit(train, y_train)
    restored = pickle.loads(pickle.dumps(model))
    # Measured 0.85 (chance 0.20); the margin allows for other library versions.
    assert accuracy_score(y_test, restored.predict(test)) >= 0.65


def test_second_run_reads_the_cache_and_sets_are_cached_one_by_one(tiny_synthetic, tmp_path, count_normalisations):
    paths = paths_and_labels(tiny_synthetic)[0]
    extractor = PageFeatures(sets=("hog_leads", "trace"), cache_dir=tmp_path)
    first = extractor.transform(paths)
    assert len(count_normalisations) == len(paths)
    assert len(list(tmp_path.glob("*/*/*.secg"))) == 2 * len(paths)  # one entry per page and set
    count_normalisations.clear()
    assert np.array_equal(extractor.transform(paths), first)
    # Another combination reuses the sets already computed.
    trace_only = PageFeatures(sets=("trace",), cache_dir=tmp_path).transform(paths)
    assert np.array_equal(trace_only, first[:, feature_length("hog_leads"):])
    assert count_normalisations == []


def test_a_set_reading_its_own_page_size_is_keyed_by_it_and_costs_one_more_normalisation(
        tiny_synthetic, tmp_path, count_normalisations):
    paths = paths_and_labels(tiny_synthetic)[0][:3]
    first = PageFeatures(sets=("trace", "signals"), cache_dir=tmp_path).transform(paths)
    assert len(count_normalisations) == 2 * len(paths)  # 320x512 for trace, 640x1024 for signals
    keys = {path.parent.parent.name for path in tmp_path.glob("*/*/*.secg")}
    assert keys == {config_hash({"sets": {"trace": 2}, "size": [320, 512]}),
                    config_hash({"sets": {"signals": FEATURE_SETS["signals"].version}, "size": [640, 1024]})}
    expected = FEATURE_SETS["signals"].function(normalise_page(paths[0], size=FEATURE_SETS["signals"].size))
    assert np.array_equal(first[0, feature_length("trace"):], expected)
    # Another working size changes nothing for signals, which still reads 640x1024: cached.
    count_normalisations.clear()
    signals_only = PageFeatures(sets=("signals",), size=(160, 256), cache_dir=tmp_path).transform(paths)
    assert np.array_equal(signals_only, first[:, feature_length("trace"):])
    assert count_normalisations == []


def test_corrupted_or_mis_shaped_cache_entries_are_recomputed(tiny_synthetic, tmp_path, count_normalisations):
    paths = paths_and_labels(tiny_synthetic)[0][:3]
    extractor = PageFeatures(sets=("trace",), cache_dir=tmp_path)
    expected = extractor.transform(paths)
    first, second = sorted(tmp_path.glob("*/*/*.secg"))[:2]
    blob = bytearray(first.read_bytes())
    blob[-3] ^= 0xFF
    first.write_bytes(bytes(blob))
    # A valid entry of the wrong length (as a set changed without a version bump would leave).
    FeatureCache(tmp_path).put(second.stem, second.parent.parent.name, np.zeros(5, dtype=np.float32))
    count_normalisations.clear()
    assert np.array_equal(extractor.transform(paths), expected)
    assert len(count_normalisations) == 2
    count_normalisations.clear()
    extractor.transform(paths)
    assert count_normalisations == []  # the recomputed rows were written back


def test_two_workers_give_the_same_array_as_one(tiny_synthetic):
    paths = paths_and_labels(tiny_synthetic)[0]
    one = PageFeatures(sets=ALL_SETS, n_jobs=1).transform(paths)
    two = PageFeatures(sets=ALL_SETS, n_jobs=2).transform(paths)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_unreadable_input_raises_image_read_error_naming_it(tiny_synthetic, tmp_path, n_jobs):
    good = paths_and_labels(tiny_synthetic)[0][:2]
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an ECG")
    with pytest.raises(ImageReadError, match="notes.jpg: not an image"):
        PageFeatures(n_jobs=n_jobs, cache_dir=tmp_path / "cache").transform(good + [notes])
    with pytest.raises(ImageReadError, match=r"missing.jpg: file not found"):
        PageFeatures(n_jobs=n_jobs).transform(good + [tmp_path / "missing.jpg"])
    with pytest.raises(ImageReadError, match=r"<bytes X\[1\]>: truncated|<bytes X\[1\]>: corrupt"):
        PageFeatures(n_jobs=n_jobs).transform([open(good[0], "rb").read(), open(good[1], "rb").read()[:5000]])


def test_other_failures_name_the_input_too():
    with pytest.raises(RuntimeError, match=r"<array X\[0\]>: feature extraction failed \(ValueError"):
        PageFeatures().transform(np.zeros((1, 5, 5, 2)))


@pytest.mark.parametrize(("shape", "cell", "block"), [((160, 256), (16, 16), (2, 2)), ((384, 64), (8, 8), (1, 1)),
                                                     ((53, 70), (8, 8), (3, 2))])
def test_our_vectorised_hog_gives_scikit_images_numbers(shape, cell, block):
    from skimage import feature

    rng = np.random.default_rng(sum(shape))
    smooth = np.cumsum(rng.random(shape), axis=1) / shape[1]  # gradients in every direction, and flat ones
    for image in (rng.random(shape), smooth, np.ones(shape)):
        expected = feature.hog(image, orientations=9, pixels_per_cell=cell, cells_per_block=block)
        np.testing.assert_allclose(hog(image, cell, block), expected, atol=1e-6)
