"""Retrieval index search: the kept matrix (ops/vector_index.py) vs stacking every embedding per
query (what the index did before: `np.stack` of N items, a full `argsort`), and a search
restricted to an id prefix (`/v1/retrieve`'s `prefix`: one cache's items, here half of them) against
the full search it narrows; and Q queries searched together (`search_many`, how an index replica
answers the searches that queue up while one runs) against the same Q one at a time.

For each index size N it fills both with the same N random unit embeddings of the paper's width
(1536) and times --queries searches for the top 10, alternating the two, median per query. Also
the add rate (amortised growth) and the memory the kept matrix holds.

    python -m benchmarks.index_search [--sizes 1000 10000 50000] [--queries 30] [--width 1536]
                                      [--together 2 4 8 16 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from ops.vector_index import VectorIndex


class StackPerQuery:
    """The previous index: a dict of items, a matrix stacked from it on every search."""

    def __init__(self):
        self.items: dict[str, dict] = {}

    def add(self, item_id: str, embedding: np.ndarray, meta: dict) -> None:
        self.items[item_id] = {"embedding": np.asarray(embedding, dtype=np.float32), "meta": meta}

    def search(self, query: np.ndarray, k: int) -> list[dict]:
        ids = list(self.items)
        matrix = np.stack([self.items[i]["embedding"] for i in ids])
        scores = matrix @ np.asarray(query, dtype=np.float32)
        order = np.argsort(-scores)[:k]
        return [{"id": ids[i], "score": float(scores[i]), **self.items[ids[i]]["meta"]} for i in order]


def unit_rows(count: int, width: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, width)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def measure(size: int, width: int, queries: int) -> dict:
    embeddings = unit_rows(size, width, seed=size)
    kept, stacked = VectorIndex(width), StackPerQuery()
    started = time.perf_counter()
    ids = [f"{'a' if i % 2 else 'b'}/item-{i}" for i in range(size)]  # two "caches", interleaved
    for item_id, embedding in zip(ids, embeddings):
        kept.add(item_id, embedding, {"kind": "video"})
    add_s = time.perf_counter() - started
    for item_id, embedding in zip(ids, embeddings):
        stacked.add(item_id, embedding, {"kind": "video"})
    times: dict[str, list[float]] = {"kept": [], "stacked": [], "prefix": []}
    for n, query in enumerate(unit_rows(queries, width, seed=size + 1)):
        found = {}
        for name, index in (("kept", kept), ("stacked", stacked)):
            started = time.perf_counter()
            found[name] = [r["id"] for r in index.search(query, 10)]
            times[name].append(time.perf_counter() - started)
        assert found["kept"] == found["stacked"]  # same answer, only the cost differs
        started = time.perf_counter()
        narrowed = [r["id"] for r in kept.search(query, 10, prefix="a/")]
        times["prefix"].append(time.perf_counter() - started)
        if n == 0:  # the full ranking filtered to the prefix, checked once
            assert narrowed == [r["id"] for r in kept.search(query, size) if r["id"].startswith("a/")][:10]
    kept_ms, stacked_ms, prefix_ms = (statistics.median(times[n]) * 1e3 for n in ("kept", "stacked", "prefix"))
    return {"items": size, "kept_ms": round(kept_ms, 3), "stack_per_query_ms": round(stacked_ms, 3),
            "speedup": round(stacked_ms / kept_ms, 1), "prefix_half_ms": round(prefix_ms, 3),
            "prefix_over_full": round(prefix_ms / kept_ms, 2), "adds_per_s": round(size / add_s),
            "matrix_mb": round(kept.nbytes / 2**20, 1)}


def measure_together(size: int, width: int, counts: list[int], repeats: int = 5) -> list[dict]:
    """For each Q in counts: the median time of Q searches one at a time and of the same Q in one
    search_many, alternating; both must return the same ids."""
    index = VectorIndex(width)
    for i, embedding in enumerate(unit_rows(size, width, seed=size)):
        index.add(f"item-{i}", embedding, {"kind": "video"})
    rows = []
    for count in counts:
        queries = unit_rows(count, width, seed=size + count)
        alone, together = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            one_by_one = [index.search(query, 10) for query in queries]
            alone.append(time.perf_counter() - started)
            started = time.perf_counter()
            batched = index.search_many(queries, 10)
            together.append(time.perf_counter() - started)
            assert [[r["id"] for r in found] for found in batched] == [[r["id"] for r in found] for found in one_by_one]
        alone_s, together_s = statistics.median(alone), statistics.median(together)
        rows.append({"items": size, "queries": count, "alone_ms_per_query": round(alone_s / count * 1e3, 3),
                     "together_ms_per_query": round(together_s / count * 1e3, 3),
                     "speedup": round(alone_s / together_s, 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--together", type=int, nargs="*", default=[2, 4, 8, 16, 32],
                        help="query counts searched in one search_many (none: skip)")
    args = parser.parse_args(argv)
    print(f"{'items':>7} {'kept ms':>9} {'stack/query ms':>15} {'speedup':>8} {'prefix ms':>10} {'prefix/full':>12} "
          f"{'adds/s':>9} {'matrix MB':>10}")
    results = []
    for size in args.sizes:
        row = measure(size, args.width, args.queries)
        results.append(row)
        print(f"{row['items']:>7} {row['kept_ms']:>9.3f} {row['stack_per_query_ms']:>15.3f} {row['speedup']:>7.1f}x "
              f"{row['prefix_half_ms']:>10.3f} {row['prefix_over_full']:>11.2f}x {row['adds_per_s']:>9} "
              f"{row['matrix_mb']:>10.1f}")
    together = []
    if args.together:
        print(f"\n{'items':>7} {'queries':>8} {'alone ms/q':>11} {'together ms/q':>14} {'speedup':>8}")
    for size in args.sizes if args.together else []:
        for row in measure_together(size, args.width, args.together):
            together.append(row)
            print(f"{row['items']:>7} {row['queries']:>8} {row['alone_ms_per_query']:>11.3f} "
                  f"{row['together_ms_per_query']:>14.3f} {row['speedup']:>7.2f}x")
    print(json.dumps({"width": args.width, "queries": args.queries, "results": results, "together": together}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
