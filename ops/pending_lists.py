"""A partition's lists filled outside the index's lock, then taken by the index in one step.

Filing a new build's items by regrouping them under the lock (VectorIndex._regroup) copied every
embedding while the shard's requests waited: 0.6-1.7 s for 100k items of 1536-d on the dev VM,
about a minute for 10M, and on a rebuild the old lists were first stacked into one matrix (a third
copy). Here the builder (pipelines/index_upkeep.py) copies rows out of the index a chunk at a time
under the lock and appends them to these lists outside it; at the end, under the lock, only the
items changed since are put right: `drop` those whose rows went stale (replaced or deleted since
they were read), `put` the current rows of those changed, scored against the centroids; then
VectorIndex.take_lists swaps the lists in.

Each list is allocated once at its final size (plus a quarter to grow, as VectorBlock.of leaves),
from the counts of the build's labels.
"""

from __future__ import annotations

import numpy as np

from ops.kmeans import nearest
from ops.vector_block import VectorBlock


class PendingLists:
    def __init__(self, centroids: np.ndarray, counts: np.ndarray):
        """centroids: (lists, D). counts: the items each list is expected to hold."""
        self.centroids = centroids
        self.blocks = [VectorBlock(centroids.shape[1], capacity=int(n) + int(n) // 4 + 1) for n in counts]
        self.places: dict[str, tuple[int, int]] = {}  # id -> (list, slot), as VectorIndex.places

    def __len__(self) -> int:
        return len(self.places)

    def file(self, item_ids: list[str], rows: np.ndarray, labels: np.ndarray) -> None:
        """Appends rows (n, D) under their lists (labels: n list numbers), one copy per list."""
        order = np.argsort(labels, kind="stable")
        ordered = labels[order]
        for group in np.split(order, np.flatnonzero(np.diff(ordered)) + 1):
            if not len(group):
                continue
            target = int(labels[group[0]])
            members = [item_ids[i] for i in group.tolist()]
            start = self.blocks[target].extend(members, rows[group])
            self.places.update((item_id, (target, start + offset)) for offset, item_id in enumerate(members))

    def drop(self, item_id: str) -> None:
        """Forgets an item whose row went stale (the last row of its list takes its slot)."""
        place = self.places.pop(item_id, None)
        if place is not None:
            moved = self.blocks[place[0]].remove(place[1])
            if moved is not None:
                self.places[moved] = place

    def put(self, item_ids: list[str], rows: np.ndarray) -> None:
        """Files rows under their nearest centroids (items changed since the build read them)."""
        if item_ids:
            self.file(item_ids, rows, nearest(rows, self.centroids))
