"""A serving shard compacts its store in the background (pipelines/index_upkeep.py): the snapshot is
captured under the lock, written outside it, and put in force with the lines appended meanwhile;
what a restart reads equals what the shard held when the compaction ended, whatever changed while
it was written. A small store is not rewritten at every add; a failed compaction loses nothing."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

import ops.index_log
import pipelines.index_upkeep
from ops.index_log import IndexLog
from ops.index_snapshot import snapshot_dir
from pipelines.serve_index import RetrievalIndex
from tests.index_store import changes, log_lines, snapshot_epoch, snapshots
from tests.partitioned_rows import clustered, filed_under_nearest

WIDTH = 16


def _held(index) -> list[tuple[str, list[float], dict]]:
    """What an index holds, in listing order: (id, embedding, meta)."""
    return [(item_id, vector.tolist(), meta) for item_id, vector, meta in index.items()]


def _restarted(store, lists: int = 0) -> RetrievalIndex:
    shard = RetrievalIndex.func_or_class(WIDTH, str(store), "model-a", lists=lists, probe=1)
    assert shard.wait_for_upkeep(timeout=60)
    return shard


def test_a_snapshot_written_while_the_index_changes_restores_the_index_as_it_ended(tmp_path, monkeypatch):
    """capture, then adds, replacements and deletes in chunks already written and in chunks not
    yet read, then commit: the snapshot holds some rows newer than the capture (replaced) or zeros
    (deleted), and the lines kept after it put every one right."""
    monkeypatch.setattr(ops.index_log, "CHUNK_ROWS", 16)  # several chunks for 100 items
    vectors = clustered(200, seed=41)
    log = IndexLog(tmp_path)
    index = log.open(WIDTH)
    items = [(f"clip{i}", vectors[i], {"n": i}) for i in range(100)]
    log.add_many(items)
    index.add_many(items)
    pending = log.capture(index)
    read = []

    def rows_of(item_ids):
        if len(read) == 2:  # two chunks written: the index changes under the rest
            for item_id in ["clip3", "clip60"]:  # replaced: one already written, one not yet read
                log.add(item_id, vectors[150], {"n": item_id, "replaced": True})
                index.add(item_id, vectors[150], {"n": item_id, "replaced": True})
            for item_id in ["clip5", "clip70"]:  # deleted: one written, one to be written as zeros
                log.delete(item_id)
                index.delete(item_id)
            log.add("late", vectors[151], {"n": "late"})
            index.add("late", vectors[151], {"n": "late"})
        read.append(item_ids)
        return index.rows_of(item_ids)

    log.write(pending, rows_of)
    log.commit(pending)
    assert len(read) == 7 and snapshot_epoch(tmp_path) == pending.epoch
    assert [line["op"] for line in changes(tmp_path)] == ["add", "add", "delete", "delete", "add"]
    on_disk = np.load(snapshot_dir(tmp_path, pending.epoch) / "vectors.npy")
    assert not on_disk[70].any() and np.array_equal(on_disk[60], vectors[150])  # the rows the lines put right
    restored = IndexLog(tmp_path).replay(WIDTH)
    assert _held(restored) == _held(index) and len(restored) == 99


def test_the_shard_answers_while_its_store_is_compacted(tmp_path, monkeypatch, caplog):
    """A new build's lists kept: the snapshot that files the items under them is written while the
    shard answers searches, adds, replacements and deletes."""
    monkeypatch.setattr(ops.index_log, "CHUNK_ROWS", 64)
    vectors = clustered(700, seed=42)
    shard = _restarted(tmp_path, lists=4)
    reached, release = threading.Event(), threading.Event()
    real_rows_of = shard.upkeep._rows_of

    def gated_rows_of(item_ids, out=None):
        if shard.upkeep.compactions == 0 and not reached.is_set():
            reached.set()
            assert release.wait(timeout=60)
        return real_rows_of(item_ids, out)

    monkeypatch.setattr(shard.upkeep, "_rows_of", gated_rows_of)
    shard.add_many([(f"clip{i}", vectors[i], {"n": i}) for i in range(400)])  # builds, then compacts
    assert reached.wait(timeout=60)  # the build is done, the snapshot captured and being written
    assert shard.index.centroids is not None and shard.upkeep.thread.name == "retrieval-index-compaction"
    assert shard.lock.acquire(timeout=5)
    shard.lock.release()
    assert shard.search(vectors[7], 1)[0]["id"] == "clip7"
    shard.add_many([(f"clip{i}", vectors[i], {"n": i}) for i in range(400, 420)])
    shard.add("clip3", vectors[650], {"n": 3, "replaced": True})
    assert shard.delete("clip5") and shard.delete("clip300")
    assert not shard.wait_for_upkeep(timeout=0.1)
    release.set()
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        assert shard.wait_for_upkeep(timeout=60)
    assert "store compacted, 400 items in a snapshot" in caplog.text and shard.upkeep.compactions >= 1
    assert len(snapshots(tmp_path)) == 1 and not any(name.endswith(".tmp") for name in snapshots(tmp_path))
    assert [line["op"] for line in changes(tmp_path)][:3] == ["add"] * 3  # the changes made while it was written
    again = _restarted(tmp_path, lists=4)
    assert _held(again.index) == _held(shard.index) and len(again.index) == 418
    assert filed_under_nearest(again.index) and again.index.generation == shard.index.generation


def test_a_small_store_is_not_rewritten_at_every_add_but_a_grown_one_is(tmp_path):
    """While serving, a compaction waits for COMPACT_WHILE_SERVING_BYTES of lines (and their share
    of the snapshot); a restart compacts by the share alone."""
    width = 1024  # a line of ~5.6 KB: the floor is reached in ~750 adds
    rng = np.random.default_rng(43)
    rows = rng.normal(size=(900, width)).astype(np.float32)
    shard = RetrievalIndex.func_or_class(width, str(tmp_path), "model-a")
    for i in range(20):
        shard.add(f"one{i}", rows[i], {})
    assert shard.wait_for_upkeep(timeout=60) and not snapshots(tmp_path)  # 20 lines: no rewrite
    restarted = RetrievalIndex.func_or_class(width, str(tmp_path), "model-a")
    assert restarted.wait_for_upkeep(timeout=60) and len(snapshots(tmp_path)) == 1 and not changes(tmp_path)
    first = snapshots(tmp_path)
    restarted.add_many([(f"many{i}", rows[i], {}) for i in range(20, 400)])
    assert restarted.wait_for_upkeep(timeout=60) and snapshots(tmp_path) == first  # under the floor
    restarted.add_many([(f"many{i}", rows[i], {}) for i in range(400, 900)])
    assert restarted.wait_for_upkeep(timeout=60)
    assert snapshots(tmp_path) != first and not changes(tmp_path) and restarted.upkeep.compactions == 2  # start, growth
    assert len(log_lines(tmp_path)) == 1
    assert _held(IndexLog(tmp_path).replay(width)) == _held(restarted.index)


def test_a_failed_compaction_loses_nothing_and_is_tried_again_later(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(pipelines.index_upkeep, "COMPACT_WHILE_SERVING_BYTES", 0)
    vectors = clustered(50, seed=44)
    shard = _restarted(tmp_path)
    real_replace = os.replace

    def disk_full(source, target):
        if "snapshot-" in str(target):
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full)
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        shard.add_many([(f"clip{i}", vectors[i], {"n": i}) for i in range(30)])
        assert shard.wait_for_upkeep(timeout=60)
    assert "compacting its store failed (OSError: [Errno 28] No space left on device)" in caplog.text
    assert not snapshots(tmp_path) and len(changes(tmp_path)) == 30  # the staging directory removed
    shard.add("clip30", vectors[30], {"n": 30})
    assert shard.upkeep.thread is None and not snapshots(tmp_path)  # not tried again at once
    monkeypatch.setattr(os, "replace", real_replace)
    monkeypatch.setattr(pipelines.index_upkeep, "RETRY_AFTER_S", 0.0)
    shard.add("clip31", vectors[31], {"n": 31})  # the first change after the wait
    assert shard.wait_for_upkeep(timeout=60) and len(snapshots(tmp_path)) == 1 and not changes(tmp_path)
    assert _held(_restarted(tmp_path).index) == _held(shard.index) and len(shard.index) == 32


def test_a_failed_build_is_tried_again_at_the_first_change_after_the_wait(monkeypatch):
    calls = []
    real = pipelines.index_upkeep.spherical_kmeans

    def once_broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("no room for the sample")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipelines.index_upkeep, "spherical_kmeans", once_broken)
    vectors = clustered(420, seed=45)
    shard = RetrievalIndex.func_or_class(WIDTH, lists=4, probe=1)
    shard.add_many([(f"clip{i}", vector, {}) for i, vector in enumerate(vectors[:400])])
    assert shard.wait_for_upkeep(timeout=60) and shard.index.centroids is None and len(calls) == 1
    shard.add("clip400", vectors[400], {})
    assert shard.upkeep.thread is None and len(calls) == 1  # within RETRY_AFTER_S: not again
    monkeypatch.setattr(pipelines.index_upkeep, "RETRY_AFTER_S", 0.0)
    shard.add("clip401", vectors[401], {})
    assert shard.wait_for_upkeep(timeout=60) and shard.index.centroids is not None and len(calls) == 2
    assert filed_under_nearest(shard.index)
