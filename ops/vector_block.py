"""A block of the retrieval index: embeddings in one contiguous float32 matrix, with their ids.

The exact index is one block; an index partitioned into lists (ops/vector_index.py) keeps a block
per list, so that a search scoring a list reads contiguous memory: gathering the same rows out of
one big matrix by row number copies them first, which on the dev VM cost ~7x the product itself
(25k rows of 1536-d: gathered and scored 39 ms, in 125 contiguous blocks 9 ms; docs/benchmarks.md).

Rows grow by doubling (amortised O(1) per append); a removal moves the last row into the freed one
(O(D)), so the live rows stay contiguous: `live` is a view, never a copy.
"""

from __future__ import annotations

import numpy as np


class VectorBlock:
    def __init__(self, width: int, capacity: int = 16):
        self.matrix = np.zeros((max(capacity, 1), width), dtype=np.float32)  # the first len(ids) rows are live
        self.ids: list[str] = []  # slot -> id

    @classmethod
    def of(cls, ids: list[str], vectors: np.ndarray) -> VectorBlock:
        """A block holding these rows (copied, with a little room to grow)."""
        block = cls(vectors.shape[1], capacity=len(ids) + len(ids) // 4 + 1)
        block.matrix[: len(ids)] = vectors
        block.ids = list(ids)
        return block

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def live(self) -> np.ndarray:
        return self.matrix[: len(self.ids)]

    def append(self, item_id: str, vector: np.ndarray) -> int:
        slot = len(self.ids)
        if slot == self.matrix.shape[0]:
            grown = np.zeros((2 * slot, self.matrix.shape[1]), dtype=np.float32)
            grown[:slot] = self.matrix[:slot]
            self.matrix = grown
        self.matrix[slot] = vector
        self.ids.append(item_id)
        return slot

    def extend(self, item_ids: list[str], vectors: np.ndarray) -> int:
        """Appends rows in one copy (grown by doubling as append does). -> the first one's slot."""
        start, end = len(self.ids), len(self.ids) + len(item_ids)
        if end > self.matrix.shape[0]:
            grown = np.zeros((max(end, 2 * self.matrix.shape[0]), self.matrix.shape[1]), dtype=np.float32)
            grown[:start] = self.matrix[:start]
            self.matrix = grown
        self.matrix[start:end] = vectors
        self.ids.extend(item_ids)
        return start

    def remove(self, slot: int) -> str | None:
        """Frees a slot; the last row moves into it. -> the id now at `slot` (None: it was the last)."""
        last = len(self.ids) - 1
        moved = None
        if slot != last:
            self.matrix[slot] = self.matrix[last]
            self.ids[slot] = moved = self.ids[last]
        self.ids.pop()
        return moved
