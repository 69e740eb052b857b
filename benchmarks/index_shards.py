"""The retrieval index split over shards (`vljepa serve --index-shards N`) against one replica, and
concurrent searches answered together (a replica's queued searches in one pass over its matrix)
against one at a time, in the same run: search latency and throughput, the memory each replica
holds, and the same answers.

For each shard count it deploys the RetrievalIndex replicas on a local Ray Serve (each shard the
deployment the application builds, pipelines/serve_deployments.py), fills them with the same
--items random unit embeddings of the paper's width (1536) through the ingress's view of the index
(pipelines/sharded_index.py: adds routed by id), then times --queries searches for the top 10 at
each concurrency, as an ingress makes them (every shard asked, the answers merged). The top 10 of
every query is checked to be the same for every configuration. Each --search-batch value is a
configuration of its own (1: a replica answers its searches one at a time, as before batching). Memory: each replica's unique set size
after the fill (what it alone holds), the first shard count's replica as the baseline.

    python -m benchmarks.index_shards [--items 200000] [--shards 1 2] [--queries 64] [--concurrency 1 8 32]
                                      [--search-batch 1 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import numpy as np
import psutil

FILL_CHUNK = 5000  # items per add_many call: 30 MB of 1536-d float32


def unit_rows(count: int, width: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, width)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def replica_memory_mb(app_prefix: str) -> list[float]:
    """Memory of each index replica of this run's applications: its unique set size (USS: pages no
    other process shares, so torch's libraries, mapped by every replica, count once in none), found
    by the title Ray gives a replica's process (`ray::ServeReplica:<app>:RetrievalIndex...`)."""
    sizes = []
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if f"ServeReplica:{app_prefix}" in title and ":RetrievalIndex" in title:
            sizes.append(process.memory_full_info().uss / 2**20)
    return sizes


async def timed_searches(index, queries: np.ndarray, concurrency: int) -> tuple[list[float], float, list[list[str]]]:
    """-> (each search's seconds, the wall seconds of all, each query's top-10 ids)."""
    latencies: list[float] = [0.0] * len(queries)
    found: list[list[str]] = [[] for _ in queries]
    next_query = iter(range(len(queries)))

    async def client():
        for i in next_query:
            started = time.perf_counter()
            found[i] = [r["id"] for r in await index.search(queries[i], 10)]
            latencies[i] = time.perf_counter() - started

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, found


def measure(shards: int, search_batch: int, items: np.ndarray, ids: list[str], queries: np.ndarray,
            concurrencies: list[int]) -> tuple[dict, list[list[str]]]:
    from ray import serve

    from pipelines.serve import index_deployment_name
    from pipelines.serve_index import RetrievalIndex
    from pipelines.sharded_index import ShardedIndex

    app = f"bench-shards{shards}-batch{search_batch}"
    # one application per shard: the benchmark holds the handles itself, as the ingress does
    handles = [serve.run(RetrievalIndex.options(name=index_deployment_name(shard), ray_actor_options={"num_cpus": 0})
                         .bind(items.shape[1], None, None, shard, shards, search_batch), name=f"{app}-{shard}", route_prefix=None)
               for shard in range(shards)]
    index = ShardedIndex(handles)

    async def fill() -> int:
        added = 0
        for start in range(0, len(ids), FILL_CHUNK):
            added += await index.add_many([(ids[i], items[i], {"kind": "video"})
                                           for i in range(start, min(start + FILL_CHUNK, len(ids)))])
        return added

    started = time.perf_counter()
    added = asyncio.run(fill())
    fill_s = time.perf_counter() - started
    assert added == len(ids), (added, len(ids))
    held = [h.page.remote(0, 0).result()[1] for h in handles]
    memory = replica_memory_mb(app)
    row = {"shards": shards, "search_batch": search_batch, "items_per_shard": held, "fill_s": round(fill_s, 1),
           "replica_uss_mb": [round(m) for m in memory], "max_replica_uss_mb": round(max(memory)) if memory else None}
    answers = None
    for concurrency in concurrencies:
        asyncio.run(timed_searches(index, queries[:4], 1))  # warm-up
        latencies, wall, found = asyncio.run(timed_searches(index, queries, concurrency))
        answers = found
        row[f"c{concurrency}"] = {"p50_ms": round(statistics.median(latencies) * 1e3, 2),
                                  "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2),
                                  "searches_per_s": round(len(queries) / wall, 1)}
    for shard in range(shards):
        serve.delete(f"{app}-{shard}")
    return row, answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--search-batch", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args(argv)

    import ray
    from ray import serve

    from pipelines.ray_runtime import init_ray

    init_ray(None)
    serve.start()
    items = unit_rows(args.items, args.width, seed=0)
    ids = [f"{'a' if i % 2 else 'b'}/{i // 1000:05d}/clip{i}" for i in range(args.items)]
    queries = unit_rows(args.queries, args.width, seed=1)
    rows, baseline_answers = [], None
    try:
        for shards in args.shards:
            for search_batch in args.search_batch:
                row, answers = measure(shards, search_batch, items, ids, queries, args.concurrency)
                if baseline_answers is None:
                    baseline_answers = answers
                # neither the split nor answering together changes an answer
                assert answers == baseline_answers, f"{shards} shards, search batch {search_batch} answered differently"
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    base = rows[0]
    for row in rows[1:]:
        for concurrency in args.concurrency:
            key = f"c{concurrency}"
            print(f"{row['shards']} shards, batch {row['search_batch']} vs {base['shards']}, batch "
                  f"{base['search_batch']}, concurrency {concurrency}: p50 "
                  f"x{base[key]['p50_ms'] / row[key]['p50_ms']:.2f} faster, searches/s "
                  f"x{row[key]['searches_per_s'] / base[key]['searches_per_s']:.2f}")
        if row["max_replica_uss_mb"] and base["max_replica_uss_mb"]:
            print(f"{row['shards']} shards, batch {row['search_batch']}: the largest replica holds "
                  f"{row['max_replica_uss_mb']} MB, "
                  f"x{row['max_replica_uss_mb'] / base['max_replica_uss_mb']:.2f} of one replica's")
    print(json.dumps({"items": args.items, "width": args.width, "results": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
