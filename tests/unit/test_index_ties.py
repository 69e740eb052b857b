"""Equal scores rank in id order, so an answer depends on the items and not on where they sit: the
order they were added in, a delete that moved a row, a partition's lists, the shards. Items here
are copies of a few one-hot directions, whose dot products with a query are exact in float32 (one
product and zeros, whatever order a BLAS kernel sums them in), so ties are real ties."""

from __future__ import annotations

import numpy as np
import pytest

from ops.index_shards import merge_top_k, split_by_shard
from ops.vector_index import TRAIN_PER_LIST, VectorIndex

WIDTH = 8
GROUPS = 4
PER_GROUP = TRAIN_PER_LIST + 1  # enough items for a list per group
# the query's scores by group: 0.8 > 0.5 > 0.3 > 0.1, each exact for a one-hot item
QUERY = np.array([0.8, 0.5, 0.3, 0.1, 0, 0, 0, 0], dtype=np.float32)


def _items(seed: int) -> list[tuple[str, np.ndarray]]:
    """(id, embedding) of GROUPS x PER_GROUP items, in a shuffled order; ids do not follow groups."""
    names = [f"clip{n:03d}" for n in np.random.default_rng(0).permutation(GROUPS * PER_GROUP)]
    items = [(names[i], np.eye(WIDTH, dtype=np.float32)[i % GROUPS]) for i in range(GROUPS * PER_GROUP)]
    return [items[i] for i in np.random.default_rng(seed).permutation(len(items))]


def _expected(k: int) -> list[str]:
    by_group = sorted(_items(0), key=lambda item: (-float(item[1] @ QUERY), item[0]))
    return [item_id for item_id, _ in by_group[:k]]


def _index(items, lists: int = 0, probe: int = 1) -> VectorIndex:
    index = VectorIndex(WIDTH)
    index.partition(lists, probe)
    for item_id, embedding in items:
        index.add(item_id, embedding, {})
    return index


def _ids(results: list[dict]) -> list[str]:
    return [r["id"] for r in results]


@pytest.mark.parametrize("k", [1, 7, PER_GROUP, PER_GROUP + 9, 3 * PER_GROUP - 1])
def test_ties_rank_by_id_and_the_k_th_place_goes_to_the_least_ids(k):
    for seed in (0, 5):  # two orders of adding the same items
        index = _index(_items(seed))
        assert _ids(index.search(QUERY, k)) == _expected(k)
        assert _ids(index.search_many([QUERY, QUERY[::-1].copy()], k)[0]) == _expected(k)


def test_moving_rows_by_deleting_and_adding_again_keeps_the_answer():
    index = _index(_items(0))
    before = index.search(QUERY, PER_GROUP + 9)
    for item_id, embedding in _items(0)[: 2 * PER_GROUP : 3]:  # their slots are refilled by others
        index.delete(item_id)
        index.add(item_id, embedding, {})
    assert index.search(QUERY, PER_GROUP + 9) == before
    assert _ids(before) == _expected(PER_GROUP + 9)


def test_a_partitioned_index_ranks_ties_as_the_exact_one():
    index = _index(_items(3), lists=GROUPS, probe=GROUPS - 1)
    assert index.centroids is not None and sorted(map(len, index.blocks)) == [PER_GROUP] * GROUPS
    for k in (5, PER_GROUP + 9, 2 * PER_GROUP + 1):
        assert _ids(index.search(QUERY, k)) == _expected(k)


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_merged_answer_as_one_index_ties_included(shards):
    parts = split_by_shard(_items(0), shards, item_id=lambda item: item[0])
    per_shard = [_index(part).search(QUERY, PER_GROUP + 9) for part in parts]
    assert _ids(merge_top_k(per_shard, PER_GROUP + 9)) == _expected(PER_GROUP + 9)
