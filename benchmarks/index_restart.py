"""A partitioned retrieval index shard's restart (`vljepa serve --index-store DIR --index-lists L`):
the kept partition (ops/index_partition_file.py: centroids on disk, each log line naming its list)
against building it again (k-means, then every item scored against every centroid: what a restart
cost before the partition was kept), with the exact index's restart as the floor, in one run.

A shard (the Serve deployment's class, without Serve) fills a store with --items clustered unit
embeddings (benchmarks/index_partition.py's family) as an ingress fills it from a cache, building
its partition on the way; then replicas start on that store, --repeats times each:
- `kept`: as the store is;
- `rebuilt`: the partition file removed first, so the replica builds the partition again;
- `exact`: --index-lists 0, no partition at all (replay and compaction only).
Each start is timed whole (replaying the log, filing the items, rewriting the log) and its
partition step alone (the time its announce line reports).

    python -m benchmarks.index_restart [--items 100000] [--width 1536] [--lists 1024] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.index_partition import clustered_rows
from ops.index_partition_file import PARTITION_NAME
from pipelines.replica_notice import SERVE_LOGGER
from pipelines.serve_index import RetrievalIndex


class Announced(logging.Handler):
    """Keeps the seconds the index's build or restore lines report."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"retrieval index: .* in ([0-9.]+) s", record.getMessage())
        if found:
            self.seconds.append(float(found.group(1)))


def start(store: Path, width: int, lists: int, announced: Announced) -> tuple[float, float, RetrievalIndex]:
    """-> (seconds to start a replica on the store, seconds of its partition step, the replica)."""
    announced.seconds.clear()
    began = time.perf_counter()
    shard = RetrievalIndex.func_or_class(width, str(store), "benchmark", lists=lists, probe=1)
    return time.perf_counter() - began, (announced.seconds or [0.0])[-1], shard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--lists", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where the store goes (default: a temporary directory)")
    args = parser.parse_args(argv)

    announced = Announced()
    logging.getLogger(SERVE_LOGGER).addHandler(announced)
    logging.getLogger(SERVE_LOGGER).setLevel(logging.INFO)
    root = Path(args.dir or tempfile.mkdtemp(prefix="index-restart-"))
    store = root / "store"
    try:
        rows = clustered_rows(args.items, args.width, np.random.default_rng(0))
        began = time.perf_counter()
        filler = RetrievalIndex.func_or_class(args.width, str(store), "benchmark", lists=args.lists, probe=1)
        for chunk in range(0, args.items, 10_000):
            filler.add_many([(f"clip{i}", rows[i], {"n": i}) for i in range(chunk, min(chunk + 10_000, args.items))])
        filled = time.perf_counter() - began
        assert filler.index.centroids is not None, "too few items for --lists: nothing was partitioned"
        queries = rows[:: max(1, args.items // 64)]
        expected = [[r["id"] for r in filler.search(q, 10)] for q in queries]
        del filler, rows

        results: dict[str, dict] = {}
        for mode in ("kept", "rebuilt", "exact"):
            starts, steps = [], []
            for _ in range(args.repeats):
                if mode == "rebuilt":
                    (store / PARTITION_NAME).unlink(missing_ok=True)
                seconds, step, shard = start(store, args.width, 0 if mode == "exact" else args.lists, announced)
                starts.append(seconds)
                steps.append(step)
                if mode == "kept":  # the same lists as before the restart: the same answers
                    assert [[r["id"] for r in shard.search(q, 10)] for q in queries] == expected
                del shard
            results[mode] = {"start_s": statistics.median(starts), "partition_s": statistics.median(steps),
                             "starts": starts}
            print(f"{mode:8s} start {results[mode]['start_s']:7.1f} s (partition step "
                  f"{results[mode]['partition_s']:6.1f} s) over {args.repeats} starts: "
                  + ", ".join(f"{s:.1f}" for s in starts), flush=True)
        summary = {"items": args.items, "width": args.width, "lists": args.lists, "fill_s": round(filled, 1),
                   **{mode: {k: (round(v, 2) if isinstance(v, float) else [round(s, 2) for s in v])
                             for k, v in result.items()} for mode, result in results.items()},
                   "start_speedup": round(results["rebuilt"]["start_s"] / results["kept"]["start_s"], 2),
                   "partition_speedup": round(results["rebuilt"]["partition_s"]
                                              / max(results["kept"]["partition_s"], 0.05), 1)}
        print(json.dumps(summary))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
