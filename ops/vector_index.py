"""The retrieval index's in-memory part: unit embeddings in one contiguous float32 matrix, searched
with one matrix-vector product and a partial sort.

The matrix is kept, not rebuilt per query: stacking N embeddings for every search (what the index
did first) copies N x D floats per query, 600 MB at 100k items of 1536-d, where the product itself
only reads them (benchmarks/index_search.py). Rows grow by doubling (amortised O(1) per add); a
delete moves the last row into the freed one (O(D)). Listing keeps insertion order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np


class VectorIndex:
    def __init__(self, width: int):
        self.width = width  # the model's embedding width: every item and query has it
        self.rows: dict[str, int] = {}  # id -> row of the matrix; insertion-ordered, so list() is too
        self.ids: list[str] = []  # row -> id
        self.meta: dict[str, dict] = {}
        self.matrix = np.zeros((16, width), dtype=np.float32)  # capacity rows; the first len(ids) are live

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, item_id: str, embedding: np.ndarray, meta: dict) -> None:
        """Adds, or replaces the item with this id (keeping its place in the listing)."""
        vector = self.vector(embedding)
        row = self.rows.get(item_id)
        if row is None:
            row = len(self.ids)
            self._reserve(row + 1)
            self.rows[item_id] = row
            self.ids.append(item_id)
        self.matrix[row] = vector
        self.meta[item_id] = meta

    def holds(self, item_id: str, embedding: np.ndarray, meta: dict) -> bool:
        """Whether the index already has exactly this item (same embedding bits, same meta)."""
        row = self.rows.get(item_id)
        return row is not None and self.meta[item_id] == meta and np.array_equal(self.matrix[row], embedding)

    def delete(self, item_id: str) -> bool:
        row = self.rows.pop(item_id, None)
        if row is None:
            return False
        del self.meta[item_id]
        last = len(self.ids) - 1
        if row != last:  # the last row fills the hole, so the live rows stay contiguous
            self.matrix[row] = self.matrix[last]
            self.ids[row] = self.ids[last]
            self.rows[self.ids[row]] = row
        self.ids.pop()
        return True

    def list(self, offset: int = 0, limit: int | None = None) -> list[dict]:
        """Items in insertion order, from `offset`, at most `limit` of them."""
        stop = None if limit is None else offset + limit
        return [{"id": item_id, **self.meta[item_id]} for item_id in itertools.islice(self.rows, offset, stop)]

    def items(self) -> Iterator[tuple[str, np.ndarray, dict]]:
        """(id, embedding, meta) in insertion order."""
        for item_id, row in self.rows.items():
            yield item_id, self.matrix[row], self.meta[item_id]

    def search(self, query: np.ndarray, k: int) -> list[dict]:
        """The k items of highest dot product with `query` (cosine for unit vectors), best first."""
        count = len(self.ids)
        if not count:
            return []
        scores = self.matrix[:count] @ self.vector(query)
        k = min(k, count)
        top = np.argpartition(-scores, k - 1)[:k] if k < count else np.arange(count)
        order = top[np.argsort(-scores[top], kind="stable")]
        return [{"id": self.ids[i], "score": float(scores[i]), **self.meta[self.ids[i]]} for i in order]

    def vector(self, embedding: np.ndarray) -> np.ndarray:
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.width:
            raise ValueError(f"an embedding of width {vector.shape[0]} for an index of width {self.width}")
        return vector

    def _reserve(self, rows: int) -> None:
        if rows <= self.matrix.shape[0]:
            return
        grown = np.zeros((max(rows, 2 * self.matrix.shape[0]), self.width), dtype=np.float32)
        grown[: len(self.ids)] = self.matrix[: len(self.ids)]
        self.matrix = grown
