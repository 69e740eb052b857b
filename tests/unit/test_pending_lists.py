"""A partition's lists filled outside the index's lock (ops/pending_lists.py): each list allocated
once at its size, places that name the slot holding each item through files, drops and puts."""

import numpy as np

from ops.pending_lists import PendingLists
from tests.partitioned_rows import clustered, unit


def test_lists_are_filled_in_place_and_stay_consistent_through_drops_and_puts():
    rows = clustered(300, seed=51)
    centroids = unit(rows[:3])
    labels = np.argmax(rows @ centroids.T, axis=1)
    pending = PendingLists(centroids, np.bincount(labels, minlength=3))
    matrices = [block.matrix for block in pending.blocks]
    ids = [f"r{i}" for i in range(300)]
    for start in range(0, 300, 64):
        pending.file(ids[start:start + 64], rows[start:start + 64], labels[start:start + 64])
    assert all(block.matrix is matrix for block, matrix in zip(pending.blocks, matrices))  # never grown
    for item_id in ["r0", "r17", "r299", "missing"]:
        pending.drop(item_id)
    pending.put(["r17", "x"], unit(rows[[150, 151]] + 0.01))
    assert len(pending) == 299 and "r0" not in pending.places
    for item_id, (block, slot) in pending.places.items():
        assert pending.blocks[block].ids[slot] == item_id
        row = rows[int(item_id[1:])] if item_id not in ("r17", "x") else None
        if row is not None:
            assert np.array_equal(pending.blocks[block].matrix[slot], row) and block == labels[int(item_id[1:])]
    assert pending.places["r17"][0] == int(np.argmax(centroids @ pending.blocks[pending.places["r17"][0]].matrix[pending.places["r17"][1]]))
