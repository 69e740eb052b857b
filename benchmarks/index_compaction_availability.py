"""Searches answered while a retrieval index shard compacts its store: the snapshot written in the
background (pipelines/index_upkeep.py, what a shard does now) against written with the shard's lock
held (what it did after each partition build before: the same IndexLog write and commit), in one run.

For each mode a shard with a store (a fresh directory under --dir) gets --items clustered unit
embeddings (benchmarks/index_partition.py's family) in one add_many, the call that makes its
partition due; the build runs in the background in both modes, and once its lists are taken the
store is compacted so that its snapshot holds the new lists. A client thread searches the shard
back to back throughout (top 10, one query at a time). Reported per mode: how long the compaction
took (from the lists taken to the new snapshot in force), how many searches were answered
meanwhile, their median latency and the longest a search sent in that span waited.

    python -m benchmarks.index_compaction_availability [--items 100000] [--width 1536] [--lists 256] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time

import numpy as np

from benchmarks.index_build_availability import Searcher, rows_and_queries
from pipelines.serve_index import RetrievalIndex


def compact_under_the_lock(upkeep, pending) -> None:
    """The compaction as a shard did it before: written and committed with the lock held."""
    with upkeep.lock:
        upkeep.log.write(pending, upkeep.index.rows_of)
        upkeep.log.commit(pending)
        upkeep.log.remove_old_snapshots()
        upkeep.compactions += 1
        upkeep.compacted_at = time.perf_counter()


def measure(mode: str, rows: np.ndarray, lists: int, queries: np.ndarray, parent: str | None) -> dict:
    store = tempfile.mkdtemp(prefix="index-compaction-", dir=parent)
    try:
        shard = RetrievalIndex.func_or_class(rows.shape[1], store, "benchmark", lists=lists, probe=1)
        if mode == "under-lock":
            shard.upkeep._compact = lambda pending: compact_under_the_lock(shard.upkeep, pending)
        searcher = Searcher(shard, queries)
        searcher.start()
        time.sleep(1.0)
        shard.add_many([(f"clip{i}", row, {"n": i}) for i, row in enumerate(rows)])
        assert shard.wait_for_upkeep()
        time.sleep(1.0)
        searcher.stop.set()
        searcher.join()
        assert shard.upkeep.compactions == 1 and shard.index.centroids is not None
        began, ended = shard.upkeep.taken_at, shard.upkeep.compacted_at
        during = searcher.answered_within(began, ended)
        # searches sent during it (one sent before waited on the build's own end: filing the items)
        waited = searcher.longest_wait_of_sent(began, ended)
        result = {"mode": mode, "compaction_s": round(ended - began, 2), "searches_during": len(during),
                  "p50_ms": round(statistics.median(during) * 1e3, 1) if during else None,
                  "worst_wait_s": round(waited, 2),
                  "snapshot_mb": round(shard.log.snapshot_bytes / 2**20)}
        print(json.dumps(result), flush=True)
        return result
    finally:
        shutil.rmtree(store, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--lists", type=int, default=256)
    parser.add_argument("--dir", default=None, help="where the stores are made (default: the temp directory)")
    args = parser.parse_args(argv)
    rows, queries = rows_and_queries(args.items, args.width)
    results = {mode: measure(mode, rows, args.lists, queries, args.dir) for mode in ("background", "under-lock")}
    background, locked = results["background"], results["under-lock"]
    print(json.dumps({"items": args.items, "width": args.width, "lists": args.lists,
                      "worst_wait_ratio": round(locked["worst_wait_s"] / max(background["worst_wait_s"], 1e-3), 1),
                      "compaction_time_ratio": round(background["compaction_s"] / max(locked["compaction_s"], 0.01), 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
