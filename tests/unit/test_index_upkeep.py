"""A shard's partition built in a thread (pipelines/index_upkeep.py): while it runs the shard answers
searches, listings, adds, replacements and deletes; when it ends, every item, those changed
meanwhile included, is filed under its nearest new centroid, and the store keeps the lists. A
failed build is reported and leaves the shard serving as it was."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

import pipelines.index_upkeep
from ops.index_partition_file import load_partition
from pipelines.serve_index import RetrievalIndex
from tests.partitioned_rows import clustered, filed_under_nearest, unit

WIDTH = 16
LISTS = 4


def _gated(monkeypatch, name: str) -> tuple[threading.Event, threading.Event]:
    """Makes the build thread stop at its first call of `name` until released. -> (reached, release)."""
    real = getattr(pipelines.index_upkeep, name)
    reached, release = threading.Event(), threading.Event()

    def gate(*args, **kwargs):
        reached.set()
        assert release.wait(timeout=60)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipelines.index_upkeep, name, gate)
    return reached, release


def test_the_shard_answers_while_its_partition_is_built(tmp_path, monkeypatch, caplog):
    vectors = clustered(700, seed=31)
    reached, release = _gated(monkeypatch, "spherical_kmeans")
    shard = RetrievalIndex.func_or_class(WIDTH, str(tmp_path), "model-a", lists=LISTS, probe=1)
    shard.add_many([(f"clip{i}", vectors[i], {"n": i}) for i in range(400)])  # the add that makes it due
    assert reached.wait(timeout=30)  # the build is in k-means, and the shard's lock is free
    assert shard.lock.acquire(timeout=5)
    shard.lock.release()
    assert shard.search(vectors[7], 1)[0]["id"] == "clip7" and shard.index.centroids is None  # exact meanwhile
    shard.add_many([(f"clip{i}", vectors[i], {"n": i}) for i in range(400, 450)])
    shard.add("clip3", vectors[650], {"n": 3, "replaced": True})
    assert shard.delete("clip5") and shard.page(0, 2)[1] == 449
    assert not shard.wait_for_upkeep(timeout=0.1)
    release.set()
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        assert shard.wait_for_upkeep(timeout=60)
    assert "built while the shard kept answering; 51 added or changed meanwhile scored at the end" in caplog.text
    index = shard.index
    assert index.centroids is not None and len(index) == 449 and "clip5" not in index
    assert filed_under_nearest(index) and index.built_at == 400
    assert np.array_equal(index.blocks[index.places["clip3"][0]].matrix[index.places["clip3"][1]], vectors[650])
    kept, _ = load_partition(tmp_path, WIDTH)
    assert kept.generation == index.generation
    again = RetrievalIndex.func_or_class(WIDTH, str(tmp_path), "model-a", lists=LISTS, probe=1)
    assert not again.upkeep.thread  # the kept lists taken: nothing to build
    assert again.page() == shard.page()
    assert {i: again.index.list_of(i) for i in again.index.meta} == {i: index.list_of(i) for i in index.meta}


def test_an_item_replaced_after_its_rows_were_read_is_scored_again(monkeypatch):
    """The race the `changed` set closes: a chunk's rows copied, then the item replaced before the
    lists are taken; its label from the old rows must not be trusted."""
    vectors = clustered(400, seed=32)
    far = unit(-vectors[:1])[0]  # opposite the first item: another list whatever the centroids
    reached, release = _gated(monkeypatch, "nearest")
    shard = RetrievalIndex.func_or_class(WIDTH, lists=LISTS, probe=1)
    shard.add_many([(f"clip{i}", vector, {}) for i, vector in enumerate(vectors)])
    assert reached.wait(timeout=30)  # the chunk's rows are copied, about to be scored
    shard.add("clip0", far, {})
    release.set()
    assert shard.wait_for_upkeep(timeout=60)
    index = shard.index
    assert index.list_of("clip0") == int(np.argmax(index.centroids @ far)) and filed_under_nearest(index)


def test_a_failed_build_is_reported_and_the_shard_serves_on(monkeypatch, caplog):
    def broken(*_, **__):
        raise MemoryError("no room for the sample")

    monkeypatch.setattr(pipelines.index_upkeep, "spherical_kmeans", broken)
    vectors = clustered(400, seed=33)
    shard = RetrievalIndex.func_or_class(WIDTH, lists=LISTS, probe=1)
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        shard.add_many([(f"clip{i}", vector, {}) for i, vector in enumerate(vectors)])
        assert shard.wait_for_upkeep(timeout=60)
    assert "building its partition failed (MemoryError: no room for the sample)" in caplog.text
    assert shard.index.centroids is None and shard.search(vectors[9], 1)[0]["id"] == "clip9"
    shard.add("one-more", vectors[0], {})
    assert shard.upkeep.thread is None  # not tried again on every add


def _consistent(index) -> bool:
    """Whether every id's place names a slot that holds it, and every slot's id is placed there."""
    return (all(index.blocks[block].ids[slot] == item_id for item_id, (block, slot) in index.places.items())
            and sum(len(block) for block in index.blocks) == len(index.places) == len(index.meta))


def test_changes_after_an_item_was_filed_in_the_new_lists_are_put_right(monkeypatch):
    """The new lists are filled outside the lock (ops/pending_lists.py); an item deleted, replaced,
    or deleted and added again after its row was filed there, and one added meanwhile, end up as
    the index holds them, and the lock was free while the lists were filled."""
    import pipelines.index_upkeep as upkeep
    from ops.pending_lists import PendingLists

    monkeypatch.setattr(upkeep, "CHUNK_ROWS", 64)
    vectors = clustered(700, seed=34)
    reached, release = threading.Event(), threading.Event()
    real_file = PendingLists.file

    def gated_file(self, *args):
        real_file(self, *args)  # the first chunk (clip0 .. clip63) is in the new lists
        if not reached.is_set():
            reached.set()
            assert release.wait(timeout=60)

    monkeypatch.setattr(PendingLists, "file", gated_file)
    shard = RetrievalIndex.func_or_class(WIDTH, lists=LISTS, probe=1)
    shard.add_many([(f"clip{i}", vectors[i], {"n": i}) for i in range(400)])
    assert reached.wait(timeout=30)
    assert shard.lock.acquire(timeout=5)  # filling the lists holds no lock
    shard.lock.release()
    assert shard.delete("clip1") and shard.delete("clip300")  # filed already; not read yet
    shard.add("clip2", vectors[600], {"n": 2, "replaced": True})  # filed with its old row
    assert shard.delete("clip4")
    shard.add("clip4", vectors[601], {"n": 4, "again": True})  # deleted, then added again
    shard.add("new", vectors[602], {"n": "new"})
    release.set()
    assert shard.wait_for_upkeep(timeout=60)
    index = shard.index
    assert index.centroids is not None and len(index) == 399 and _consistent(index)
    assert "clip1" not in index.places and "clip300" not in index.places and filed_under_nearest(index)
    for item_id, row in [("clip2", vectors[600]), ("clip4", vectors[601]), ("new", vectors[602]), ("clip9", vectors[9])]:
        block, slot = index.places[item_id]
        assert np.array_equal(index.blocks[block].matrix[slot], row)
    assert [item["id"] for item in shard.page(0, 3)[0]] == ["clip0", "clip2", "clip3"]


def test_lists_of_other_items_than_the_index_holds_are_refused():
    from ops.pending_lists import PendingLists
    from ops.vector_index import VectorIndex

    vectors = clustered(100, seed=35)
    index = VectorIndex(WIDTH)
    index.build_later = True
    index.partition(LISTS, 1)
    index.add_many([(f"clip{i}", vector, {}) for i, vector in enumerate(vectors)])
    pending = PendingLists(unit(vectors[:LISTS]), np.full(LISTS, 25))
    pending.put([f"clip{i}" for i in range(99)], vectors[:99])  # one short
    with pytest.raises(ValueError, match="hold 99 items in 99 rows, the index 100"):
        index.take_lists(pending, 100)
    assert index.centroids is None and len(index.blocks) == 1


def test_lists_whose_centroids_could_not_be_saved_are_never_read_as_other_lists(tmp_path, monkeypatch, caplog):
    """Saving a build's centroids fails (a full disk) after the shard took its lists: items added
    since name the build they were filed under, which no kept file holds, so a restart scores them."""
    import ops.index_log
    from tests.index_store import changes

    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ops.index_log, "save_partition", disk_full)
    vectors = clustered(500, seed=36)
    shard = RetrievalIndex.func_or_class(WIDTH, str(tmp_path), "model-a", lists=LISTS, probe=1)
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        shard.add_many([(f"clip{i}", vectors[i], {}) for i in range(400)])
        assert shard.wait_for_upkeep(timeout=60)
    assert "building its partition failed (OSError: [Errno 28] No space left on device)" in caplog.text
    assert shard.index.centroids is not None  # taken before the save failed: the shard searches by them
    shard.add("after", vectors[450], {})
    assert changes(tmp_path)[-1]["build"] == shard.index.generation
    monkeypatch.undo()
    again = RetrievalIndex.func_or_class(WIDTH, str(tmp_path), "model-a", lists=LISTS, probe=1)
    assert again.wait_for_upkeep(timeout=60) and len(again.index) == 401 and filed_under_nearest(again.index)
    assert again.search(vectors[450], 1)[0]["id"] == "after"
