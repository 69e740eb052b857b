"""The cache's Parquet layout: S_V built from whole buffers (chunked under int32 offsets), stored
byte-stream-split with no dictionary or statistics, and read back bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

import ops.cache.parquet as cache_parquet
from ops.cache.parquet import cache_schema, parquet_bytes, rows_to_table


def make_rows(lengths: list[int], dtype=np.float16) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"key": f"k{i}", "shard": "s", "source": "yfcc", "task": "caption", "media_kind": "video",
             "query": "", "target": f"caption {i}", "candidates": ["a", "b"] if i % 2 else [],
             "frame_times": [0.0, 0.5], "s_v_shape": [n // 4, 4], "s_v": rng.standard_normal(n).astype(dtype)}
            for i, n in enumerate(lengths)]


def test_rows_round_trip_through_parquet_exactly():
    rows = make_rows([64, 16, 0, 64])
    table = rows_to_table(rows, "float16")
    assert table.schema.equals(cache_schema("float16"))
    back = pq.read_table(io.BytesIO(parquet_bytes(table, bulk_columns=("s_v",))))
    assert back.schema.equals(cache_schema("float16"))
    for i, row in enumerate(rows):
        assert np.array_equal(np.asarray(back["s_v"][i].values), row["s_v"])
        assert back["candidates"][i].as_py() == row["candidates"]
        assert back["key"][i].as_py() == row["key"]


def test_s_v_is_split_into_chunks_under_the_offset_limit(monkeypatch):
    monkeypatch.setattr(cache_parquet, "MAX_VALUES_PER_CHUNK", 100)
    rows = make_rows([40, 40, 40, 150, 10], dtype=np.float32)  # one row alone exceeds the limit
    column = rows_to_table(rows, "float32")["s_v"]
    assert [len(chunk) for chunk in column.chunks] == [2, 1, 1, 1]
    assert all(np.array_equal(np.asarray(column[i].values), r["s_v"]) for i, r in enumerate(rows))
    assert rows_to_table([], "float16").num_rows == 0


def test_bulk_column_skips_dictionary_and_statistics():
    data = parquet_bytes(rows_to_table(make_rows([64, 64]), "float16"), bulk_columns=("s_v",))
    group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    s_v = columns["s_v.list.element"]
    assert "BYTE_STREAM_SPLIT" in s_v.encodings and "RLE_DICTIONARY" not in s_v.encodings
    assert s_v.statistics is None
    assert columns["key"].statistics is not None  # the small columns keep theirs



def test_markers_and_status_from_one_listing(tmp_path):
    from ops.cache.feature_cache import FeatureCache

    cache = FeatureCache(str(tmp_path / "cache"))
    assert cache.status(["a", "b"], "f1") == {"a": "pending", "b": "pending"}  # no directory yet
    cache.commit_shard("a", make_rows([8]), [], "f1", "float16")
    cache.commit_shard("b", make_rows([8, 8]), [], "f0", "float16")
    (tmp_path / "cache" / "c.parquet").write_bytes(b"written, never committed")  # a killed commit
    assert cache.status(["a", "b", "c", "d"], "f1") == {"a": "done", "b": "stale", "c": "pending", "d": "pending"}
    markers = cache.markers(["a", "b", "c"])
    assert markers["a"]["rows"] == 1 and markers["b"]["rows"] == 2 and markers["c"] is None
    assert markers["a"] == cache.marker("a")


def test_markers_listed_in_the_manifest_are_not_read_again(tmp_path):
    from ops.cache.feature_cache import FeatureCache, Fingerprint

    fingerprint = Fingerprint(x_encoder="x", x_encoder_config_hash="0", num_frames=1, image_size=8, storage_dtype="float16")
    cache = FeatureCache(str(tmp_path / "cache"))
    for shard in ("a", "b"):
        cache.commit_shard(shard, make_rows([8]), [], fingerprint.digest(), "float16")
    cache.write_manifest(fingerprint, cache.markers(["a", "b"]))
    (tmp_path / "cache" / "a.done.json").write_text("unreadable")  # proves the manifest's entry is used
    cache.commit_shard("c", make_rows([8, 8, 8]), [], fingerprint.digest(), "float16")  # after the manifest
    (tmp_path / "cache" / "b.done.json").unlink()  # a deleted marker: the shard is pending again
    markers = cache.markers(["a", "b", "c"], known={"d": {"rows": 9}})
    assert markers["a"]["rows"] == 1 and markers["b"] is None and markers["c"]["rows"] == 3
    assert cache.status(["a", "b", "c"], fingerprint.digest()) == {"a": "done", "b": "pending", "c": "done"}


def test_a_relative_local_cache_path_is_made_absolute(tmp_path, monkeypatch):
    """Commit tasks rebuild the cache from its URL in their own working directory."""
    from ops.cache.feature_cache import FeatureCache

    monkeypatch.chdir(tmp_path)
    assert FeatureCache("relative/cache/").url == str(tmp_path / "relative" / "cache")
