"""The training reader: seeded per-epoch file orders, stage rows only, replay subsampling, bounded
record batches (no Ray here; tests/integration/train/test_train.py runs it on Ray Data)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ops.cache.files import CacheFileReader, CacheSource, pass_items


def write_cache(root, shards: int = 6, rows: int = 10) -> str:
    """A cache of `shards` files; in each, rows alternate video/image, every third is VQA."""
    root.mkdir()
    manifest = {"shards": {}}
    for index in range(shards):
        name = f"shard-{index:03d}"
        table = pa.table({
            "media_kind": ["video" if r % 2 == 0 else "image" for r in range(rows)],
            "task": ["vqa" if r % 3 == 0 else "caption" for r in range(rows)],
            "target": [f"{name}/{r}" for r in range(rows)],
            "s_v": [[float(r)] * 4 for r in range(rows)],
        })
        pq.write_table(table, root / f"{name}.parquet")
        manifest["shards"][name] = {"rows": rows}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)


def as_batch(items: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.array([item[key] for item in items]) for key in items[0]}


def test_each_epoch_lists_every_shard_once_in_a_seeded_order(tmp_path):
    source = CacheSource(write_cache(tmp_path / "c", shards=8), ("video",), ("caption",))
    items = pass_items([source], epochs=3, seed=7)
    epochs = [[i["shard"] for i in items if i["epoch"] == e] for e in range(3)]
    assert [len(shards) for shards in epochs] == [8, 8, 8]
    assert all(sorted(shards) == [f"shard-{k:03d}" for k in range(8)] for shards in epochs)
    assert len({tuple(shards) for shards in epochs}) == 3  # epochs are read in different orders
    assert pass_items([source], epochs=3, seed=7) == items  # ...that the seed fixes
    assert pass_items([source], epochs=3, seed=8) != items


def test_reader_yields_the_stage_rows_with_their_epoch(tmp_path):
    source = CacheSource(write_cache(tmp_path / "c", shards=2, rows=10), ("video",), ("caption",))
    reader = CacheFileReader((source,), ("target", "s_v"), record_batch_rows=2)
    tables = list(reader(as_batch(pass_items([source], epochs=2, seed=0))))
    assert len(tables) > 2 * 2 and max(t.num_rows for t in tables) == 2  # several bounded tables per file
    rows = pa.concat_tables(tables)
    # video (even r) captioning (r not a multiple of 3) rows: r in {2, 4, 8}, per shard, per epoch
    assert sorted(rows["target"].to_pylist()) == sorted(
        f"shard-{s:03d}/{r}" for s in range(2) for r in (2, 4, 8) for _ in range(2))
    assert sorted(rows["epoch"].to_pylist()) == [0] * 6 + [1] * 6
    assert not any(rows["replay"].to_pylist())
    assert set(rows.column_names) >= {"target", "s_v", "media_kind", "task", "replay", "epoch"}


def test_replayed_rows_are_subsampled_to_their_share_reproducibly(tmp_path):
    url = write_cache(tmp_path / "c", shards=10, rows=100)
    replay = CacheSource(url, ("video", "image"), ("caption", "vqa"), replay=True, keep=0.25)
    reader = CacheFileReader((replay,), ("target",), seed=3)
    items = as_batch(pass_items([replay], epochs=1, seed=3))
    kept = pa.concat_tables(list(reader(items)))
    assert 150 < kept.num_rows < 350  # ~25% of 1000
    assert all(kept["replay"].to_pylist())
    again = pa.concat_tables(list(CacheFileReader((replay,), ("target",), seed=3)(items)))
    assert again["target"].to_pylist() == kept["target"].to_pylist()  # a resumed run draws the same rows


def test_a_weight_above_one_repeats_a_source_and_draws_its_remainder(tmp_path):
    """--cache-weights: keep 2.5 reads every row twice and a seeded half once more, each copy of a
    file a read of its own in the epoch's order; copy 0 draws as an unweighted subsample did."""
    url = write_cache(tmp_path / "c", shards=10, rows=100)
    assert CacheSource(url, ("video",), ("caption",), keep=2.5).copies() == [1.0, 1.0, 0.5]
    assert CacheSource(url, ("video",), ("caption",), keep=1.0).copies() == [1.0]
    upweighted = CacheSource(url, ("video", "image"), ("caption", "vqa"), keep=2.5)
    items = pass_items([upweighted], epochs=1, seed=3)
    assert sorted((i["shard"], i["copy"]) for i in items) == sorted(
        (f"shard-{s:03d}", c) for s in range(10) for c in range(3))
    rows = pa.concat_tables(list(CacheFileReader((upweighted,), ("target",), seed=3)(as_batch(items))))
    counts = np.bincount(np.unique(rows["target"].to_pylist(), return_counts=True)[1])
    assert counts[0] == counts[1] == 0 and counts[2] + counts[3] == 1000  # every row twice or three times
    assert 400 < counts[3] < 600  # a half drawn for the third read
    # a subsample (keep < 1) is one read of copy 0, drawn as before copies existed
    sub = CacheSource(url, ("video", "image"), ("caption", "vqa"), keep=0.25)
    assert {i["copy"] for i in pass_items([sub], epochs=1, seed=3)} == {0}


def test_a_missing_shard_file_is_an_error_not_an_empty_epoch(tmp_path):
    url = write_cache(tmp_path / "c", shards=2)
    (tmp_path / "c" / "shard-001.parquet").unlink()
    source = CacheSource(url, ("video",), ("caption",))
    with pytest.raises(FileNotFoundError):
        list(CacheFileReader((source,), ("target",))(as_batch(pass_items([source], epochs=1, seed=0))))


def test_read_tasks_group_files_but_keep_every_cpu_busy():
    from pipelines.train.data import MAX_READ_BLOCKS, read_blocks

    assert read_blocks(17, cluster_cpus=2) == 3  # the demo cache: a few tasks, not one per file
    assert read_blocks(200, cluster_cpus=64) == 64  # a big cluster: a task per CPU
    assert read_blocks(3, cluster_cpus=64) == 3  # never more tasks than files
    assert read_blocks(10**6, cluster_cpus=16) == MAX_READ_BLOCKS
    assert read_blocks(0, cluster_cpus=2) == 1


def test_a_directory_without_a_cache_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no feature cache"):
        pass_items([CacheSource(str(tmp_path), ("video",), ("caption",))], epochs=1, seed=0)


def test_a_cache_of_another_x_encoder_is_refused_naming_both(tmp_path):
    from ops.cache.feature_cache import FeatureCache, Fingerprint
    from ops.cache.files import require_feature_cache

    cache = FeatureCache(str(tmp_path / "cache"))
    built_with = {"x_encoder": "facebook/vjepa2-vitl-fpc64-256", "x_encoder_config_hash": "aaaa"}
    cache.write_manifest(Fingerprint(**built_with, num_frames=8, image_size=256, storage_dtype="float16"),
                         {"shard-000": {"rows": 3}})
    assert require_feature_cache(cache.url, built_with) == ["shard-000"]
    assert require_feature_cache(cache.url) == ["shard-000"]  # no encoder asked: not checked
    other = {"x_encoder": "tiny-vjepa2-v1", "x_encoder_config_hash": "bbbb"}
    with pytest.raises(ValueError, match="x-encoder facebook/vjepa2-vitl-fpc64-256 .* reads features of tiny-vjepa2-v1"):
        require_feature_cache(cache.url, other)
