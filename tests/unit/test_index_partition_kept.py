"""A partitioned index shard kept in a store (ops/index_partition_file.py): a restarted replica
files every item under the list it had, with the same centroids and without k-means or scoring its
items; labels of another build (a crash between keeping new centroids and rewriting the log) are
scored, not trusted; other list counts, an exact restart, an unreadable file and a reshard each
lead to a fresh build or none, never to stale centroids."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import ops.vector_index
from ops.index_log import LOG_NAME
from ops.index_partition_file import PARTITION_NAME, SavedPartition, load_partition, save_partition
from ops.vector_index import REBUILD_GROWTH, TRAIN_PER_LIST
from pipelines.serve_index import RetrievalIndex
from tests.index_store import changes, filing
from tests.partitioned_rows import clustered, filed_under_nearest, unit
from tests.search_results import assert_same_results

WIDTH = 16
LISTS = 4


def _shard(store, lists: int = LISTS, probe: int = 1) -> RetrievalIndex:
    """A replica started on the store, once any partition build its start began is done."""
    shard = RetrievalIndex.func_or_class(WIDTH, str(store), "model-a", lists=lists, probe=probe)
    assert shard.wait_for_upkeep(timeout=60)
    return shard


def _filled_shard(store) -> tuple[RetrievalIndex, np.ndarray]:
    """A shard built over a cache's 400 items, then changed by single adds, replacements and deletes."""
    vectors = clustered(600, seed=21)
    shard = _shard(store)
    shard.add_many([(f"clip{i}", vector, {"n": i}) for i, vector in enumerate(vectors[:400])])
    assert shard.wait_for_upkeep(timeout=60) and shard.index.centroids is not None
    for i in range(400, 460):  # new items, filed one at a time under the kept build
        shard.add(f"clip{i}", vectors[i], {"n": i})
    for i in range(0, 60, 3):  # replacements: another embedding, often another list
        shard.add(f"clip{i}", vectors[599 - i], {"n": i, "replaced": True})
    for i in range(1, 60, 7):
        assert shard.delete(f"clip{i}")
    return shard, vectors


def _no_kmeans(monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("k-means ran: the kept partition was not taken")
    monkeypatch.setattr(ops.vector_index, "spherical_kmeans", refuse)


def _no_regrouping(monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("the items were regrouped: the snapshot's lists were not taken as they are")
    monkeypatch.setattr(ops.vector_index.VectorIndex, "_regroup", refuse)


def test_a_snapshot_of_the_lists_is_taken_as_it_is_through_the_changes_since(tmp_path, monkeypatch, caplog):
    """A restart from a snapshot whose blocks are the kept lists copies each embedding once, into
    its list: the log's adds, replacements and deletes since it go to their lists as they are read
    (a damaged label scored), and the blocks are never regrouped."""
    first, vectors = _filled_shard(tmp_path)
    shard = _shard(tmp_path)  # a snapshot of the lists
    for i in range(460, 480):
        shard.add(f"clip{i}", vectors[i], {"n": i})
    for i in (2, 5, 460):
        shard.add(f"clip{i}", vectors[590 - i], {"n": i, "again": True})
    for i in (3, 461):
        assert shard.delete(f"clip{i}")
    path = tmp_path / LOG_NAME
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[4]["list"] = 999  # a damaged label
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    _no_kmeans(monkeypatch)
    _no_regrouping(monkeypatch)
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        again = _shard(tmp_path)
    assert "(1 scored against their centroids)" in caplog.text
    assert again.page() == shard.page() and filed_under_nearest(again.index)
    assert {i: again.index.list_of(i) for i in again.index.meta} == {i: shard.index.list_of(i) for i in shard.index.meta}
    for query in vectors[::40]:
        assert_same_results(again.search(query, 10), shard.search(query, 10))


def test_a_restarted_shard_files_its_items_under_the_lists_it_had(tmp_path, monkeypatch, caplog):
    first, vectors = _filled_shard(tmp_path)
    _no_kmeans(monkeypatch)
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        again = _shard(tmp_path)
    assert f"{len(first.index)} items filed under the store's {LISTS} lists (0 scored against their centroids)" \
        in caplog.text  # every item placed by its log line's label
    assert np.array_equal(again.index.centroids, first.index.centroids)
    assert (again.index.generation, again.index.built_at) == (first.index.generation, first.index.built_at)
    assert {i: again.index.list_of(i) for i in again.index.meta} == {i: first.index.list_of(i) for i in first.index.meta}
    assert filed_under_nearest(again.index)
    assert again.page() == first.page()
    for query in vectors[::50]:
        assert_same_results(again.search(query, 10), first.search(query, 10))
    assert {i: label for i, (_, label) in filing(tmp_path, WIDTH).items()} == \
        {i: again.index.list_of(i) for i in again.index.meta}  # the snapshot's blocks are the lists
    written = (tmp_path / LOG_NAME).stat().st_ino  # compacted at that start: no snapshot yet
    _no_regrouping(monkeypatch)
    _shard(tmp_path)  # nothing changed since: nothing is written, the snapshot's blocks are the lists
    assert (tmp_path / LOG_NAME).stat().st_ino == written

    # the growth rule counts from the kept build: rebuilt by the add reaching REBUILD_GROWTH times it
    monkeypatch.undo()
    built_at = again.index.built_at
    more = clustered(REBUILD_GROWTH * built_at, seed=22)
    again.add_many([(f"more{i}", vector, {}) for i, vector in
                    enumerate(more[: REBUILD_GROWTH * built_at - len(again.index) - 1])])
    assert again.wait_for_upkeep(timeout=60) and again.index.built_at == built_at  # not due yet
    again.add("the-last", more[-1], {})
    assert again.wait_for_upkeep(timeout=60) and again.index.built_at == REBUILD_GROWTH * built_at and again.index.generation != first.index.generation
    kept, _ = load_partition(tmp_path, WIDTH)
    assert kept.generation == again.index.generation and np.array_equal(kept.centroids, again.index.centroids)
    # a snapshot of the new lists written with them
    assert {build for build, _ in filing(tmp_path, WIDTH).values()} == {again.index.generation}
    assert {i: label for i, (_, label) in filing(tmp_path, WIDTH).items()} == \
        {i: again.index.list_of(i) for i in again.index.meta}


def test_labels_of_another_build_are_scored_not_trusted(tmp_path, caplog):
    first, _ = _filled_shard(tmp_path)
    _shard(tmp_path)  # a snapshot of the first build's lists
    # a crash after keeping a new build's centroids, before a snapshot of their lists was written
    other = unit(np.random.default_rng(23).normal(size=(LISTS, WIDTH)))
    save_partition(tmp_path, SavedPartition("another", other, first.index.built_at))
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        again = _shard(tmp_path)
    assert f"({len(first.index)} scored against their centroids)" in caplog.text
    assert np.array_equal(again.index.centroids, other) and filed_under_nearest(again.index)
    # reopening wrote a snapshot of these lists: the next start scores nothing
    assert {build for build, _ in filing(tmp_path, WIDTH).values()} == {"another"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        _shard(tmp_path)
    assert "(0 scored against their centroids)" in caplog.text


def test_a_label_past_the_lists_is_scored_not_trusted(tmp_path, caplog):
    first, vectors = _filled_shard(tmp_path)
    shard = _shard(tmp_path)  # a snapshot of the lists; then adds filed in the log's lines
    for i in range(460, 470):
        shard.add(f"clip{i}", vectors[i], {"n": i})
    path = tmp_path / LOG_NAME
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[5]["list"] = 999  # a damaged line, still valid JSON
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        again = _shard(tmp_path)
    assert "(1 scored against their centroids)" in caplog.text and filed_under_nearest(again.index)
    assert again.index.list_of(lines[5]["id"]) == shard.index.list_of(lines[5]["id"])
    again.log.compact(again.index)  # a compaction writes it where it is
    assert filing(tmp_path, WIDTH)[lines[5]["id"]] == (again.index.generation, again.index.list_of(lines[5]["id"]))
    assert not changes(tmp_path)


@pytest.mark.parametrize("lists", [0, 8])
def test_restarting_with_other_settings_builds_again_or_drops_the_partition(tmp_path, monkeypatch, lists):
    first, _ = _filled_shard(tmp_path)
    again = _shard(tmp_path, lists=lists)
    filed = filing(tmp_path, WIDTH)
    if lists == 0:  # exact: the kept centroids go, and the stored labels with them
        assert again.index.centroids is None and not (tmp_path / PARTITION_NAME).exists()
        assert set(filed.values()) == {(None, None)}
        _no_kmeans(monkeypatch)
        assert _shard(tmp_path, lists=LISTS, probe=LISTS).index.centroids is None  # probing every list: exact
        monkeypatch.undo()
        assert _shard(tmp_path).index.generation not in (None, first.index.generation)  # built anew
    else:
        assert len(again.index.centroids) == lists and again.index.generation != first.index.generation
        assert load_partition(tmp_path, WIDTH)[0].lists == lists and filed_under_nearest(again.index)
        assert {build for build, _ in filed.values()} == {again.index.generation}


def test_an_unreadable_partition_file_is_reported_and_built_again(tmp_path, caplog):
    first, _ = _filled_shard(tmp_path)
    (tmp_path / PARTITION_NAME).write_bytes(b"not a zip")
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        again = _shard(tmp_path)
    assert "is unreadable" in caplog.text and f"{len(first.index)} items filed under {LISTS} lists in" in caplog.text
    assert again.index.generation != first.index.generation and filed_under_nearest(again.index)
    assert load_partition(tmp_path, WIDTH)[0].generation == again.index.generation
    assert "not (lists, 8)" in load_partition(tmp_path, 8)[1]  # centroids of another width are refused too


def test_a_resharded_store_leaves_no_kept_partition_behind(tmp_path):
    from ops.index_reshard import reshard_store

    shard, _ = _filled_shard(tmp_path)
    assert shard.wait_for_upkeep(timeout=60) and (tmp_path / PARTITION_NAME).exists()
    # stopped first, as the service is for a reshard: a background job of a live shard (this
    # process shares its store lock with the reshard) could still write its partition afterwards
    shard.close()
    reshard_store(tmp_path, 2)  # a shard's centroids were learnt from items it no longer holds
    assert not list(tmp_path.rglob(PARTITION_NAME))
    halves = [RetrievalIndex.func_or_class(WIDTH, str(tmp_path), "model-a", shard, 2, lists=2, probe=1)
              for shard in range(2)]
    assert all(half.wait_for_upkeep(timeout=60) for half in halves)
    assert all(half.index.centroids is not None and filed_under_nearest(half.index) for half in halves)
    for half in halves:
        half.close()
    reshard_store(tmp_path, 1)
    assert not list(tmp_path.rglob(PARTITION_NAME))
