"""Committing shards from the stream: the tracker that says when a shard's rows are all in (and in
which blocks), and the commit that writes a shard from those blocks in the shard's own order."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from ops.cache.commit import commit_shard_from_batches, shard_counts
from ops.cache.feature_cache import FeatureCache, Fingerprint
from pipelines.cache.commits import ShardTracker

FINGERPRINT = Fingerprint(x_encoder="tiny", x_encoder_config_hash="0", num_frames=2, image_size=8,
                          storage_dtype="float16")


def _rows(shards: dict[str, int]) -> list[dict]:
    rows = []
    for shard, total in shards.items():
        for i in range(total):
            rows.append({"shard": shard, "shard_index": i, "shard_total": total, "key": f"{shard}-{i}",
                         "status": "ok" if i % 4 else "error", "reason": "" if i % 4 else "decode",
                         "error_message": "", "source": "yfcc", "task": "caption", "media_kind": "video",
                         "query": "", "target": f"t{i}", "candidates": "[]",
                         "frame_times": np.array([0.0, 0.5], dtype=np.float32),
                         "s_v": np.full((4, 2), i, dtype=np.float16)})
    return rows


def _batches(rows: list[dict], batch_rows: int, seed: int = 0) -> list[dict]:
    """Rows shuffled (the streaming executor's order) and cut into numpy batches."""
    rng = np.random.default_rng(seed)
    rows = [rows[j] for j in rng.permutation(len(rows))]
    batches = []
    for start in range(0, len(rows), batch_rows):
        part = rows[start:start + batch_rows]
        batches.append({k: np.array([r[k] for r in part] + [None], dtype=object)[:-1] for k in part[0]})
    return batches


def test_each_shard_completes_once_with_exactly_the_blocks_holding_it():
    shards = {f"s{n}": 5 + n for n in range(9)}
    batches = _batches(_rows(shards), batch_rows=7)
    tracker, completed = ShardTracker(), {}
    for number, batch in enumerate(batches):
        for shard, pieces in tracker.add([(f"block{number}", None)], [shard_counts(batch)]):
            assert shard not in completed
            # complete at its last block, not before
            assert number == max(n for n, b in enumerate(batches) if shard in set(b["shard"]))
            completed[shard] = [ref for ref, _ in pieces]
    assert tracker.incomplete() == [] and set(completed) == set(shards)
    for shard, refs in completed.items():
        assert refs == [f"block{n}" for n, b in enumerate(batches) if shard in set(b["shard"])]


def test_tracker_refuses_more_rows_than_the_shard_has_and_reports_the_unfinished():
    tracker = ShardTracker()
    assert tracker.add([("a", None)], [{"s0": (2, 3), "s1": (1, 5)}]) == []
    assert tracker.incomplete() == ["s0", "s1"]
    with pytest.raises(RuntimeError, match="s0: 4 rows seen, 3 expected"):
        tracker.add([("b", None)], [{"s0": (2, 3)}])


def test_commit_writes_the_shard_in_its_own_order_whatever_the_stream_order(tmp_path):
    shards = {"s0": 9, "s1": 6}
    written = []
    for seed in (0, 1):
        cache = FeatureCache(str(tmp_path / f"cache{seed}"))
        counts = commit_shard_from_batches(cache, "s0", _batches(_rows(shards), 4, seed), FINGERPRINT.digest(), "float16")
        assert counts["rows"] == 6 and counts["bad"] == {"decode": 3}
        table = pq.read_table(tmp_path / f"cache{seed}" / "s0.parquet")
        assert table["key"].to_pylist() == [f"s0-{i}" for i in range(9) if i % 4]
        assert table["s_v"].to_pylist()[0] == [1.0] * 8
        report = pq.read_table(tmp_path / f"cache{seed}" / "s0.report.parquet").to_pylist()
        assert [r["key"] for r in report] == [f"s0-{i}" for i in range(9)]
        assert (tmp_path / f"cache{seed}" / "s0.done.json").exists()
        written.append((tmp_path / f"cache{seed}" / "s0.parquet").read_bytes())
    assert written[0] == written[1]  # a re-run writes the same bytes


def test_commit_missing_rows_raises_and_leaves_no_marker(tmp_path):
    rows = [r for r in _rows({"s0": 6}) if r["shard_index"] != 3]
    cache = FeatureCache(str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="s0: 5 rows handed to its commit, 6 expected"):
        commit_shard_from_batches(cache, "s0", _batches(rows, 4), FINGERPRINT.digest(), "float16")
    assert not (tmp_path / "cache" / "s0.done.json").exists()
