"""Searches answered while a retrieval index shard builds its partition: built in a thread
(pipelines/index_upkeep.py, what a shard does now) against built inside the add that made it due,
holding the shard's lock throughout (what it did before: the same build, VectorIndex's own), in
one run.

For each mode a shard (the Serve deployment's class, without Serve) gets --items clustered unit
embeddings (benchmarks/index_partition.py's family) in one add_many, the call that makes its
partition due, while a client thread searches it back to back (top 10, one query at a time, as
requests reach a replica). Reported per mode: how long until the partition is built, how many
searches were answered while it was, and their latency (median and worst), the worst being how
long a client's request waited.

    python -m benchmarks.index_build_availability [--items 100000] [--width 1536] [--lists 1024]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import numpy as np

from benchmarks.index_partition import clustered_rows
from pipelines.serve_index import RetrievalIndex


class Searcher(threading.Thread):
    """Searches the shard back to back until stopped; keeps each search's (start, latency)."""

    def __init__(self, shard: RetrievalIndex, queries: np.ndarray):
        super().__init__(daemon=True)
        self.shard, self.queries = shard, queries
        self.stop = threading.Event()
        self.searches: list[tuple[float, float]] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            began = time.perf_counter()
            self.shard.search(self.queries[n % len(self.queries)], 10)
            self.searches.append((began, time.perf_counter() - began))
            n += 1

    def answered_within(self, began: float, ended: float) -> list[float]:
        """Latencies of the searches sent and answered between began and ended."""
        return [latency for start, latency in self.searches if start >= began and start + latency < ended]

    def longest_wait_of_sent(self, began: float, ended: float) -> float:
        """The longest a search sent between began and ended waited."""
        return max((latency for start, latency in self.searches if began <= start < ended), default=0.0)


def rows_and_queries(items: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark's clustered unit rows (benchmarks/index_partition.py's family) and 64 of them as queries."""
    rng = np.random.default_rng(0)
    rows = clustered_rows(items, width, rng)
    return rows, rows[rng.choice(len(rows), 64, replace=False)]


def measure(mode: str, rows: np.ndarray, lists: int, queries: np.ndarray) -> dict:
    shard = RetrievalIndex.func_or_class(rows.shape[1], lists=lists, probe=1)
    if mode == "blocking":  # the build inside the add, under the shard's lock, as before
        shard.index.build_later = False
    items = [(f"clip{i}", row, {"n": i}) for i, row in enumerate(rows)]

    searcher = Searcher(shard, queries)
    searcher.start()
    time.sleep(1.0)  # searches of the empty index: the client is running
    began = time.perf_counter()
    shard.add_many(items)
    added = time.perf_counter() - began
    assert shard.wait_for_upkeep()
    time.sleep(1.0)
    searcher.stop.set()
    searcher.join()
    assert shard.index.centroids is not None
    # background: when its lists were taken; blocking: when the add that built them returned
    ended = shard.upkeep.taken_at if mode == "background" else began + added
    built = ended - began
    # answered between the add's start and the build's end (one waiting through it all ends just after)
    during = searcher.answered_within(began, ended)
    waited = max((latency for start, latency in searcher.searches if start < ended and start + latency > began),
                 default=0.0)
    # the build's own holds: searches sent once the add had returned (the add's own write excluded)
    after_add = searcher.longest_wait_of_sent(began + added, ended)
    result = {"mode": mode, "add_many_s": round(added, 2), "until_built_s": round(built, 1),
              "searches_during_build": len(during),
              "p50_ms": round(statistics.median(during) * 1e3, 1) if during else None,
              "worst_wait_s": round(waited, 2), "worst_wait_after_add_s": round(after_add, 2)}
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--lists", type=int, default=1024)
    args = parser.parse_args(argv)
    rows, queries = rows_and_queries(args.items, args.width)
    results = {mode: measure(mode, rows, args.lists, queries) for mode in ("background", "blocking")}
    background, blocking = results["background"], results["blocking"]
    print(json.dumps({"items": args.items, "width": args.width, "lists": args.lists,
                      "worst_wait_ratio": round(blocking["worst_wait_s"] / max(background["worst_wait_s"], 1e-3), 1),
                      "build_time_ratio": round(background["until_built_s"] / max(blocking["until_built_s"], 0.1), 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
