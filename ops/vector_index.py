"""The retrieval index's in-memory part: unit embeddings in one contiguous float32 matrix, searched
with one matrix-vector product and a partial sort, or for several queries at once (search_many)
with one matrix-matrix product, which reads the matrix once for all of them.

The matrix is kept, not rebuilt per query: stacking N embeddings for every search (what the index
did first) copies N x D floats per query, 600 MB at 100k items of 1536-d, where the product itself
only reads them (benchmarks/index_search.py). Rows grow by doubling (amortised O(1) per add); a
delete moves the last row into the freed one (O(D)). Listing keeps insertion order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

# From this many queries at once, one matrix-matrix product beats a matrix-vector product each.
# Below it OpenBLAS's matrix-matrix kernel is slower than the loop (2 queries: half the speed);
# at 6 it is x1.35-1.5 faster, at 16 x3.7-4.8 (1k-200k rows of 1536, 2 cores; docs/benchmarks.md).
GEMM_FROM = 6


class VectorIndex:
    def __init__(self, width: int):
        self.width = width  # the model's embedding width: every item and query has it
        self.rows: dict[str, int] = {}  # id -> row of the matrix; insertion-ordered, so list() is too
        self.ids: list[str] = []  # row -> id
        self.meta: dict[str, dict] = {}
        self.matrix = np.zeros((16, width), dtype=np.float32)  # capacity rows; the first len(ids) are live
        self._layout = 0  # changes whenever an id gains, loses or moves row
        self._prefix_rows: tuple = (None, None, None)  # (layout, prefix, rows) of the last prefix searched

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
            self._layout += 1
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
        self._layout += 1
        last = len(self.ids) - 1
        if row != last:  # the last row fills the hole, so the live rows stay contiguous
            self.matrix[row] = self.matrix[last]
            self.ids[row] = self.ids[last]
            self.rows[self.ids[row]] = row
        self.ids.pop()
        return True

    def list(self, offset: int = 0, limit: int | None = None, prefix: str | None = None) -> list[dict]:
        """Items in insertion order, from `offset`, at most `limit` of them; with `prefix`, only
        those whose id starts with it (one cache's items: `eval/`)."""
        stop = None if limit is None else offset + limit
        return [{"id": item_id, **self.meta[item_id]}
                for item_id in itertools.islice(self.matching(prefix), offset, stop)]

    def count(self, prefix: str | None = None) -> int:
        return len(self.ids) if prefix is None else len(self.rows_matching(prefix))  # a listing's pages: one scan

    def matching(self, prefix: str | None) -> Iterator[str]:
        """Ids in insertion order, those starting with `prefix` when given: a scan of the ids (a
        string comparison each, ~0.1 s per million items), where a search is a scan of the matrix."""
        return iter(self.rows) if prefix is None else (item_id for item_id in self.rows if item_id.startswith(prefix))

    def items(self) -> Iterator[tuple[str, np.ndarray, dict]]:
        """(id, embedding, meta) in insertion order."""
        for item_id, row in self.rows.items():
            yield item_id, self.matrix[row], self.meta[item_id]

    def search(self, query: np.ndarray, k: int, prefix: str | None = None) -> list[dict]:
        """The k items of highest dot product with `query` (cosine for unit vectors), best first;
        with `prefix`, among the items whose id starts with it."""
        return self.search_many([query], k, prefix)[0]

    def search_many(self, queries, k: int, prefix: str | None = None) -> list[list[dict]]:
        """search() for each of `queries` (the same k and prefix), scoring them against the matrix
        in one pass: a search is bound by reading the matrix (1.2 GB at 200k items of 1536-d),
        so Q queries read together cost little more than one (benchmarks/index_search.py)."""
        queries = np.stack([self.vector(query) for query in queries])
        live = self.matrix[: len(self.ids)]  # a view of the live rows: nothing copied
        if len(queries) < GEMM_FROM:  # BLAS's matrix-matrix kernels lose to matrix-vector ones here
            scores = np.stack([live @ query for query in queries])
        else:  # rows x queries is the faster of the two orders; each query's scores then made contiguous
            scores = np.ascontiguousarray((live @ queries.T).T)
        rows = None if prefix is None else self.rows_matching(prefix)
        if rows is not None:
            scores = scores[:, rows]  # scoring every row and keeping some beats copying those rows out
        return [self._ranked(row_scores, k, rows) for row_scores in scores]

    def _ranked(self, scores: np.ndarray, k: int, rows: np.ndarray | None) -> list[dict]:
        count = len(scores)
        if not count:
            return []
        k = min(k, count)
        top = np.argpartition(-scores, k - 1)[:k] if k < count else np.arange(count)
        order = top[np.argsort(-scores[top], kind="stable")]
        ids = [self.ids[i if rows is None else rows[i]] for i in order]
        return [{"id": item_id, "score": float(scores[i]), **self.meta[item_id]} for i, item_id in zip(order, ids)]

    def rows_matching(self, prefix: str) -> np.ndarray:
        """Rows of the ids starting with `prefix`, kept for the next search with the same prefix
        (a client searching one cache's videos asks with it every time) until the rows change."""
        if self._prefix_rows[:2] != (self._layout, prefix):
            rows = np.fromiter((row for row, item_id in enumerate(self.ids) if item_id.startswith(prefix)), np.int64)
            self._prefix_rows = (self._layout, prefix, rows)
        return self._prefix_rows[2]

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
