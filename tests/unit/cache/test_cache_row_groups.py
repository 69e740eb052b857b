"""A shard's features in bounded row groups: streamed to the file (atomically), read back a group at
a time with S_V as numpy views, the same rows and the same seeded subsample whatever the grouping."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import ops.cache.parquet as cache_parquet
from ops.cache.feature_cache import FeatureCache, Fingerprint
from ops.cache.files import CacheFileReader, CacheSource, read_shard_rows, shard_rows_by_group
from ops.cache.parquet import row_group_bounds
from ops.evaluate.zero_shot import load_rows
from tests.unit.cache.test_feature_cache_format import make_rows

FINGERPRINT = Fingerprint(x_encoder="x", x_encoder_config_hash="0", num_frames=1, image_size=8, storage_dtype="float16")


def commit(root, rows: list[dict], shard: str = "s0") -> tuple[FeatureCache, dict]:
    cache = FeatureCache(str(root))
    counts = cache.commit_shard(shard, rows, [], FINGERPRINT.digest(), "float16")
    cache.write_manifest(FINGERPRINT, cache.markers([shard]))
    return cache, counts


def mixed_rows(count: int) -> list[dict]:
    """Rows of two tasks, so a training stage's selection drops some."""
    rows = make_rows([64] * count)
    for index, row in enumerate(rows):
        row["task"] = "vqa" if index % 3 == 0 else "caption"
    return rows


def record_group_reads(monkeypatch) -> list[int]:
    """The row groups read from now on, in order (every reader goes through read_row_group)."""
    groups_read: list[int] = []
    real_read = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, group, **kw: groups_read.append(group) or real_read(self, group, **kw))
    return groups_read


def test_groups_fill_up_to_the_budget_and_a_larger_row_stands_alone():
    rows = make_rows([64, 64, 64, 200, 8, 8])  # float16: 128, 128, 128, 400, 16, 16 bytes of S_V
    assert row_group_bounds(rows, "float16", group_bytes=256) == [(0, 2), (2, 3), (3, 4), (4, 6)]
    assert row_group_bounds(rows, "float16", group_bytes=10**6) == [(0, 6)]
    assert row_group_bounds([], "float16") == []


def test_a_shard_over_the_budget_is_written_in_groups_and_reads_back_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", 300)
    rows = make_rows([64] * 7 + [16])  # 128 bytes of S_V each, the last 32: groups of 2
    cache, counts = commit(tmp_path / "cache", rows)
    path = tmp_path / "cache" / "s0.parquet"
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [2, 2, 2, 2]
    assert counts["rows"] == 8 and counts["bytes"] == path.stat().st_size
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "manifest.json", "s0.done.json", "s0.parquet", "s0.report.parquet"]  # no staging file left

    loaded = load_rows(cache.url)
    assert [row["key"] for row in loaded] == [row["key"] for row in rows]
    for row, back in zip(rows, loaded):
        assert isinstance(back["s_v"], np.ndarray) and back["s_v"].dtype == np.float16
        assert np.array_equal(back["s_v"], row["s_v"])
        assert back["candidates"] == row["candidates"] and back["s_v_shape"] == row["s_v_shape"]
    assert [row["key"] for row in load_rows(cache.url, max_samples=3)] == ["k0", "k1", "k2"]


def test_training_reads_the_same_rows_and_subsample_from_one_group_or_many(tmp_path, monkeypatch):
    rows = mixed_rows(20)
    one_group, _ = commit(tmp_path / "one", rows)
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", 3 * 128)
    many_groups, _ = commit(tmp_path / "many", rows)
    assert pq.ParquetFile(tmp_path / "many" / "s0.parquet").metadata.num_row_groups == 7

    def read(cache: FeatureCache, keep: float) -> list[list[str]]:
        source = CacheSource(cache.url, ("video",), ("caption",), keep=keep)
        reader = CacheFileReader((source,), ("key", "s_v", "target"), seed=3)
        return [table["key"].to_pylist() for table in reader.read_file(0, "s0", epoch=1)]

    for keep in (1.0, 0.5):
        whole, grouped = read(one_group, keep), read(many_groups, keep)
        assert sum(grouped, []) == sum(whole, [])
        assert max(len(keys) for keys in grouped) <= 3  # a yielded table never spans row groups
    every_caption = [row["key"] for row in rows if row["task"] == "caption"]
    assert sum(read(many_groups, 1.0), []) == every_caption
    # the subsample is one seeded draw per selected row in file order, as the reader always drew it
    # (a resumed run, or one over a cache written before row groups, keeps the same rows)
    draws = np.random.default_rng([3, 1, 0, *b"s0"]).random(len(every_caption)) < 0.5
    assert sum(read(many_groups, 0.5), []) == [key for key, drawn in zip(every_caption, draws) if drawn]
    assert 0 < draws.sum() < len(every_caption)


def test_a_subsampled_source_reads_only_the_row_groups_with_drawn_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", 128)  # a row a group
    rows = mixed_rows(30)
    cache, _ = commit(tmp_path / "cache", rows)
    groups_read = record_group_reads(monkeypatch)
    source = CacheSource(cache.url, ("video",), ("caption",), keep=0.2)
    keys = sum((t["key"].to_pylist() for t in CacheFileReader((source,), ("key", "s_v")).read_file(0, "s0", 0)), [])
    assert 0 < len(keys) < 10
    assert groups_read == [int(key[1:]) for key in keys]  # the drawn rows' groups, no other


def test_rows_at_reads_only_the_groups_holding_them(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", 2 * 128)
    rows = make_rows([64] * 8)
    cache, _ = commit(tmp_path / "cache", rows)
    groups_read = record_group_reads(monkeypatch)

    found = read_shard_rows(cache.url, "s0", [5, 0, 4], ["key", "s_v_shape", "s_v"])
    assert [row["key"] for row in found] == ["k5", "k0", "k4"]
    assert all(np.array_equal(row["s_v"], rows[int(row["key"][1:])]["s_v"]) for row in found)
    assert sorted(groups_read) == [0, 2]  # rows 0-1, 4-5: groups 1 and 3 are never read
    assert read_shard_rows(cache.url, "s0", [], ["key"]) == []
    with pytest.raises(IndexError, match="file of 8"):
        read_shard_rows(cache.url, "s0", [8], ["key"])


def test_rows_come_a_group_at_a_time_each_group_read_when_its_rows_are_asked_for(tmp_path, monkeypatch):
    """index-build reads the rows it predicts this way: one group of S_V held at a time."""
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", 2 * 128)
    rows = make_rows([64] * 8)
    cache, _ = commit(tmp_path / "cache", rows)
    groups_read = record_group_reads(monkeypatch)

    by_group = shard_rows_by_group(cache.url, "s0", [0, 1, 4, 7], ["key", "s_v_shape", "s_v"])
    assert [(i, row["key"]) for i, row in next(by_group)] == [(0, "k0"), (1, "k1")] and groups_read == [0]  # lazily
    assert [[(i, row["key"]) for i, row in group] for group in by_group] == [[(4, "k4")], [(7, "k7")]]
    assert groups_read == [0, 2, 3]


def test_a_commit_failing_in_a_later_group_leaves_no_file(tmp_path, monkeypatch):
    """The first group is on its way to the file when a later one fails: the shard stays pending
    (no data file, no staging file, no marker) and an earlier commit of it is kept whole."""
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", 128)
    cache, first = commit(tmp_path / "cache", make_rows([64, 64]))
    before = (tmp_path / "cache" / "s0.parquet").read_bytes()
    broken = make_rows([64, 64, 64])
    broken[2]["candidates"] = 7  # not a list of strings: Arrow refuses the third group
    with pytest.raises(Exception, match="list"):
        cache.commit_shard("s0", broken, [], FINGERPRINT.digest(), "float16")
    with pytest.raises(Exception, match="list"):
        cache.commit_shard("s1", broken, [], FINGERPRINT.digest(), "float16")
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == ["manifest.json", "s0.done.json", "s0.parquet", "s0.report.parquet"]
    assert (tmp_path / "cache" / "s0.parquet").read_bytes() == before
    assert cache.marker("s0") == first


def test_an_empty_shard_is_a_readable_file_with_no_rows(tmp_path):
    """Every sample of a shard bad: the commit still writes a file with the schema, and no rows."""
    cache, counts = commit(tmp_path / "cache", [])
    assert counts["rows"] == 0 and pq.ParquetFile(tmp_path / "cache" / "s0.parquet").metadata.num_rows == 0
    assert list(CacheFileReader((CacheSource(cache.url, ("video",), ("caption",)),), ("s_v",)).read_file(0, "s0", 0)) == []
