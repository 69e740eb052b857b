"""The retrieval index partitioned into lists (`vljepa serve --index-lists L --index-probe P`: IVF,
ops/vector_index.py) against the exact index, in the same run: the time to build the partition,
search time (one query, and 32 searched together), memory, and recall@10, the share of the exact
top 10 a partitioned search returns.

Recall depends on the embeddings, so two synthetic families bound it:
- `clustered`: unit embeddings around items/100 random directions (cosine ~0.55 to their
  direction), queries an item perturbed to cosine ~0.8 (a caption close to its video): an item's
  neighbours share its direction, the structure a model's embeddings of many kinds of content have;
- `uniform`: directions with no structure at all, queries likewise, the worst case for any
  partition (an item's true neighbours are no nearer each other than anything else);
and `--embeddings FILE.npy` (N x D, e.g. Ŝ_Y of your videos) measures your own, with queries from
`--query-embeddings FILE.npy` (your captions' S_Y) or, without it, your items perturbed as above.

With --serve it also deploys an exact and a partitioned RetrievalIndex replica on a local Ray
Serve (the application's deployment, filled through add_many as an ingress fills it) and times
searches at each --concurrency through their handles, as benchmarks/index_shards.py does.

    python -m benchmarks.index_partition [--items 200000] [--lists 512] [--probe 4 16 64]
                                         [--data clustered uniform | --embeddings FILE.npy]
                                         [--serve --concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import numpy as np

from ops.vector_index import VectorIndex

TOGETHER = 32  # searches answered together, as an index replica's batch at most


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def embeddings(kind: str, items: int, queries: int, width: int, args, seed: int = 0):
    """-> (items' unit embeddings, queries' unit embeddings)."""
    rng = np.random.default_rng(seed)
    if kind == "file":
        rows = unit(np.load(args.embeddings).astype(np.float32))
        if args.query_embeddings:
            return rows, unit(np.load(args.query_embeddings).astype(np.float32))[:queries]
        picked = rows[rng.integers(0, len(rows), queries)]
        return rows, unit(picked + rng.normal(scale=0.75 / np.sqrt(rows.shape[1]), size=picked.shape))
    if kind == "uniform":
        return unit(rng.normal(size=(items, width))), unit(rng.normal(size=(queries, width)))
    rows = clustered_rows(items, width, rng)
    picked = rows[rng.integers(0, items, queries)]
    return rows, unit(picked + rng.normal(scale=0.75 / np.sqrt(width), size=picked.shape))  # cosine ~0.8 to the item


def clustered_rows(items: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The `clustered` family's items: unit embeddings around items/100 random directions."""
    directions = max(1, items // 100)
    centres = unit(rng.normal(size=(directions, width)))
    rows = np.empty((items, width), dtype=np.float32)
    for start in range(0, items, 50_000):  # in chunks: the noise of 200k x 1536 in float64 is 2.4 GB
        count = min(50_000, items - start)
        noise = rng.normal(scale=1.5 / np.sqrt(width), size=(count, width))  # cosine ~0.55 to the centre
        rows[start:start + count] = unit(centres[rng.integers(0, directions, count)] + noise)
    return rows


def ids_of(found: list[dict]) -> list[str]:
    return [r["id"] for r in found]


def recall(found: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def timed(search, queries: np.ndarray) -> tuple[float, float, list[list[str]]]:
    """-> (median ms of one search, ms per query when TOGETHER are searched in one call, top-10 ids)."""
    search(queries[:2])  # warm-up
    single = []
    for query in queries:
        started = time.perf_counter()
        search(query[None])
        single.append(time.perf_counter() - started)
    started = time.perf_counter()
    found = [ids_of(r) for start in range(0, len(queries), TOGETHER) for r in search(queries[start:start + TOGETHER])]
    together = (time.perf_counter() - started) / len(queries)
    return statistics.median(single) * 1e3, together * 1e3, found


def measure_in_process(kind: str, args) -> dict:
    rows, queries = embeddings(kind, args.items, args.queries, args.width, args)
    ids = [f"clip{i}" for i in range(len(rows))]
    exact = VectorIndex(rows.shape[1])
    for item_id, row in zip(ids, rows):
        exact.add(item_id, row, {})
    exact_ms, exact_together_ms, exact_found = timed(lambda q: exact.search_many(q, 10), queries)
    exact_mb = exact.nbytes / 2**20
    del exact
    index = VectorIndex(rows.shape[1])
    for item_id, row in zip(ids, rows):
        index.add(item_id, row, {})
    started = time.perf_counter()
    index.partition(args.lists, 1)  # builds the partition now; each probe below is set in turn
    build_s = time.perf_counter() - started
    sizes = sorted(map(len, index.blocks))
    result = {"data": kind, "items": len(rows), "lists": args.lists, "build_s": round(build_s, 1),
              "list_sizes_min_median_max": [sizes[0], sizes[len(sizes) // 2], sizes[-1]],
              "memory_mb_exact": round(exact_mb), "memory_mb_partitioned": round(index.nbytes / 2**20),
              "exact_ms": round(exact_ms, 2), "exact_together_ms_per_query": round(exact_together_ms, 2), "probes": []}
    for probe in args.probe:
        index.probe = probe
        ms, together_ms, found = timed(lambda q: index.search_many(q, 10), queries)
        result["probes"].append({"probe": probe, "recall_at_10": round(recall(found, exact_found), 3),
                                 "ms": round(ms, 2), "speedup": round(exact_ms / ms, 1),
                                 "together_ms_per_query": round(together_ms, 2),
                                 "together_speedup": round(exact_together_ms / together_ms, 1)})
        print(json.dumps({"data": kind, **result["probes"][-1]}), flush=True)
    return result


def measure_served(kind: str, args) -> dict:
    """An exact and a partitioned replica of the application's RetrievalIndex, through handles."""
    from ray import serve

    from benchmarks.index_shards import FILL_CHUNK, timed_searches
    from pipelines.serve_index import RetrievalIndex
    from pipelines.sharded_index import ShardedIndex

    rows, queries = embeddings(kind, args.items, args.queries, args.width, args)
    ids = [f"clip{i}" for i in range(len(rows))]
    probe = args.probe[len(args.probe) // 2]
    result, answers = {"data": kind, "items": len(rows), "lists": args.lists, "probe": probe}, {}
    for name, lists in (("exact", 0), ("partitioned", args.lists)):
        handle = serve.run(RetrievalIndex.options(name="RetrievalIndex", ray_actor_options={"num_cpus": 0})
                           .bind(rows.shape[1], lists=lists, probe=probe), name=f"bench-{name}", route_prefix=None)
        index = ShardedIndex([handle])

        async def fill():
            for start in range(0, len(ids), FILL_CHUNK):
                await index.add_many([(ids[i], rows[i], {}) for i in range(start, min(start + FILL_CHUNK, len(ids)))])

        started = time.perf_counter()
        asyncio.run(fill())
        assert handle.wait_for_upkeep.remote(3600).result(), "the partition build did not end"  # built in the background
        result[f"{name}_fill_s"] = round(time.perf_counter() - started, 1)
        for concurrency in args.concurrency:
            asyncio.run(timed_searches(index, queries[:4], 1))  # warm-up
            latencies, wall, found = asyncio.run(timed_searches(index, queries, concurrency))
            answers[name] = found
            result[f"{name}_c{concurrency}"] = {"p50_ms": round(statistics.median(latencies) * 1e3, 2),
                                                "searches_per_s": round(len(queries) / wall, 1)}
        serve.delete(f"bench-{name}")
    result["recall_at_10"] = round(recall(answers["partitioned"], answers["exact"]), 3)
    for concurrency in args.concurrency:
        ratio = (result[f"partitioned_c{concurrency}"]["searches_per_s"]
                 / result[f"exact_c{concurrency}"]["searches_per_s"])
        result[f"searches_per_s_ratio_c{concurrency}"] = round(ratio, 2)
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--lists", type=int, default=512)
    parser.add_argument("--probe", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--queries", type=int, default=128)
    parser.add_argument("--data", nargs="+", choices=["clustered", "uniform"], default=["clustered", "uniform"])
    parser.add_argument("--embeddings", default=None, help="an .npy of N x D item embeddings, measured instead of --data")
    parser.add_argument("--query-embeddings", default=None, help="with --embeddings: an .npy of query embeddings")
    parser.add_argument("--serve", action="store_true", help="also through Ray Serve replicas")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args(argv)
    if args.embeddings:
        args.data = ["file"]

    results = [measure_in_process(kind, args) for kind in args.data]
    served = []
    if args.serve:
        import ray
        from ray import serve

        from pipelines.ray_runtime import init_ray

        init_ray(None)
        serve.start()
        try:
            served = [measure_served(kind, args) for kind in args.data]
        finally:
            serve.shutdown()
            ray.shutdown()
    print(json.dumps({"width": args.width, "in_process": results, "served": served}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
