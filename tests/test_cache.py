import multiprocessing as mp
import os

import numpy as np
import pytest

from features.cache import FeatureCache, cache_root, config_hash, default_cache_dir

SHA = "ab" + "0" * 62


def test_miss_then_hit_returns_the_same_array(tmp_path):
    cache = FeatureCache(tmp_path)
    key = config_hash({"set": "hog", "size": 512})
    assert cache.get(SHA, key) is None
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put(SHA, key, array)
    got = cache.get(SHA, key)
    assert got.dtype == np.float32 and np.array_equal(got, array)


def test_config_hash_ignores_key_order_and_changes_with_values():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


@pytest.mark.parametrize("damage", ["flip-a-byte", "truncate", "garbage"])
def test_a_corrupted_entry_is_dropped_and_reported_as_a_miss(tmp_path, damage, caplog):
    cache = FeatureCache(tmp_path)
    cache.put(SHA, "cfg", np.ones(100, dtype=np.float64))
    path = cache.path_for(SHA, "cfg")
    blob = bytearray(path.read_bytes())
    if damage == "flip-a-byte":
        blob[-5] ^= 0xFF
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob = bytearray(b"not a cache entry")
    path.write_bytes(bytes(blob))
    assert cache.get(SHA, "cfg") is None
    assert not path.exists() and "corrupted entry" in caplog.text
    cache.put(SHA, "cfg", np.ones(100))  # recomputed and stored again
    assert np.array_equal(cache.get(SHA, "cfg"), np.ones(100))


def _writer(root, value, rounds):
    cache = FeatureCache(root)
    for _ in range(rounds):
        cache.put(SHA, "cfg", np.full(50_000, value, dtype=np.float64))


def test_two_processes_writing_one_key_leave_a_whole_entry(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), v, 30)) for v in (1.0, 2.0)]
    for p in procs:
        p.start()
    reader = FeatureCache(tmp_path)
    while any(p.is_alive() for p in procs):
        got = reader.get(SHA, "cfg")
        if got is not None:  # every read is one writer's whole array, never a mix
            assert got.shape == (50_000,) and got[0] in (1.0, 2.0) and np.all(got == got[0])
    for p in procs:
        p.join()
        assert p.exitcode == 0
    final = reader.get(SHA, "cfg")
    assert final is not None and np.all(final == final[0])
    assert not [f for f in os.listdir(reader.path_for(SHA, "cfg").parent) if f.startswith(".tmp-")]


def test_prune_keeps_the_cache_under_its_bound_dropping_oldest_first(tmp_path):
    cache = FeatureCache(tmp_path, max_bytes=3 * 8_300)
    for i in range(6):
        sha = f"{i:02d}" + "f" * 62
        cache.put(sha, "cfg", np.zeros(1000))  # ~8.1 kB each
        os.utime(cache.path_for(sha, "cfg"), (i, i))
    assert cache.prune() == 3
    assert cache.size_bytes() <= cache.max_bytes
    assert cache.get("00" + "f" * 62, "cfg") is None and cache.get("05" + "f" * 62, "cfg") is not None


def test_clear_removes_everything(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put(SHA, "a", np.zeros(3))
    cache.put(SHA, "b", np.zeros(3))
    entry_size = cache.path_for(SHA, "a").stat().st_size
    assert cache.stats() == (2, 2 * entry_size)
    assert cache.clear() == (2, 2 * entry_size)
    assert cache.stats() == (0, 0) and cache.get(SHA, "a") is None


def test_clear_removes_dead_writers_temp_files_but_not_live_ones_nor_foreign_files(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put(SHA, "cfg", np.zeros(3))
    folder = cache.path_for(SHA, "cfg").parent
    dead, live, foreign = folder / ".tmp-dead.secg", folder / ".tmp-live.secg", folder / "notes.txt"
    for path in (dead, live, foreign):
        path.write_bytes(b"x" * 10)
    os.utime(dead, (0, 0))
    assert cache.stats().entries == 1  # temp files are not entries
    assert cache.clear().entries == 1
    assert not dead.exists() and live.exists() and foreign.exists()


def test_a_missing_folder_is_an_empty_cache(tmp_path):
    cache = FeatureCache(tmp_path / "nowhere")
    assert cache.stats() == (0, 0) and cache.clear() == (0, 0)
    assert not cache.root.exists()


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_cache_root_defaults_to_home_when_smartecg_cache_is_unset(monkeypatch, tmp_path, value):
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("SMARTECG_CACHE", raising=False)
    else:
        monkeypatch.setenv("SMARTECG_CACHE", value)
    assert cache_root() == tmp_path / ".cache" / "smartecg"
    assert default_cache_dir() == cache_root() / "features" == FeatureCache().root


def test_cache_root_follows_smartecg_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SMARTECG_CACHE", str(tmp_path))
    assert cache_root() == tmp_path and FeatureCache().root == tmp_path / "features"
