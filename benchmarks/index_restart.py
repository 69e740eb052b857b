"""A partitioned retrieval index shard's restart (`vljepa serve --index-store DIR --index-lists L`):
from its binary snapshot (ops/index_snapshot.py) against the store's first format (every item a
JSON line with base64 embedding, each naming its list), and with the kept partition
(ops/index_partition_file.py) against building it again (k-means, then every item scored against
every centroid), with the exact index's restart as the floor, in one run.

A shard (the Serve deployment's class, without Serve) fills a store with --items clustered unit
embeddings (benchmarks/index_partition.py's family) as an ingress fills it from a cache, building
its partition on the way, and starts once on it (which compacts it into a snapshot); then replicas
start on it, --repeats times each:
- `kept`: as the store is: the snapshot, the kept partition, nothing to write;
- `lines`: the same items in the store's first format (a copy written for each start: one JSON
  line per item naming its list, the same partition file), timed to the end of filing the items
  (what a start of that format cost when it had nothing to rewrite); the one-time conversion
  into a snapshot that such a start now adds is reported apart (`convert_s`);
- `rebuilt`: the partition file removed first, so the replica builds the partition again;
- `exact`: --index-lists 0, no partition at all.
Each start is timed whole and its partition step alone (the time its announce line reports); one
more start of `kept` and of `lines`, untimed, measures the most memory Python held during it
(tracemalloc, which numpy reports its arrays to), against the embeddings' own size.

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
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.index_partition import clustered_rows
from ops.index_log import LOG_NAME, MODEL_NAME, IndexLog
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
    assert shard.wait_for_upkeep()  # a start that builds builds in the background: timed to its end
    return time.perf_counter() - began, (announced.seconds or [0.0])[-1], shard


def lines_store(shard: RetrievalIndex, store: Path, copy: Path) -> Path:
    """The shard's items as the store's first format wrote them: one add line per item naming its
    build and list, beside the same partition file and model record."""
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    for name in (PARTITION_NAME, MODEL_NAME):
        shutil.copy(store / name, copy / name)
    index, generation = shard.index, shard.index.generation
    with (copy / LOG_NAME).open("w", encoding="utf-8") as log:
        for item_id, embedding, meta in index.items():
            log.write(IndexLog._add_line(item_id, embedding, meta, {"build": generation, "list": index.list_of(item_id)}))
    return copy


def start_from_lines(store: Path, width: int, lists: int, announced: Announced) -> tuple[float, float, float]:
    """-> (seconds to read and file a store of lines, its partition step, seconds converting it into a snapshot)."""
    announced.seconds.clear()
    began = time.perf_counter()
    log = IndexLog(store, "benchmark")
    index = log.replay(width)
    index.partition(lists, 1, lambda line: logging.getLogger(SERVE_LOGGER).info("%s", line),
                    saved=log.saved, filed=log.filed)
    read = time.perf_counter() - began
    assert log.epoch is None and index.generation == log.saved.generation
    began = time.perf_counter()
    log.keep(index, compact=True)
    return read, (announced.seconds or [0.0])[-1], time.perf_counter() - began


def peak_mb(start_once) -> float:
    """The most memory traced while `start_once()` runs (what the start itself allocated), in MB."""
    tracemalloc.start()
    try:
        start_once()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


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
        assert filler.wait_for_upkeep()
        filled = time.perf_counter() - began
        assert filler.index.centroids is not None, "too few items for --lists: nothing was partitioned"
        queries = rows[:: max(1, args.items // 64)]
        expected = [[r["id"] for r in filler.search(q, 10)] for q in queries]
        del filler, rows
        began = time.perf_counter()
        first = start(store, args.width, args.lists, announced)[2]  # compacts the fill's lines into a snapshot
        print(f"first start (the fill's lines compacted into a snapshot): {time.perf_counter() - began:.1f} s", flush=True)
        assert first.log.epoch is not None and not first.log.change_bytes
        template, legacy = lines_store(first, store, root / "lines-template"), root / "lines"
        del first

        def lines_copy() -> Path:  # each start of that format converts its store: a fresh copy each time
            shutil.rmtree(legacy, ignore_errors=True)
            return Path(shutil.copytree(template, legacy))

        peaks = {"kept": peak_mb(lambda: start(store, args.width, args.lists, announced)),
                 "lines": peak_mb(lambda: start_from_lines(lines_copy(), args.width, args.lists, announced))}
        embeddings_mb = args.items * args.width * 4 / 1e6
        print(f"peak memory of a start: kept {peaks['kept']:.0f} MB, lines {peaks['lines']:.0f} MB "
              f"(the embeddings: {embeddings_mb:.0f} MB)", flush=True)

        results: dict[str, dict] = {}
        for mode in ("kept", "lines", "rebuilt", "exact"):
            starts, steps, converts = [], [], []
            for _ in range(args.repeats):
                if mode == "rebuilt":
                    (store / PARTITION_NAME).unlink(missing_ok=True)
                if mode == "lines":
                    seconds, step, convert = start_from_lines(lines_copy(), args.width, args.lists, announced)
                    converts.append(convert)
                else:
                    seconds, step, shard = start(store, args.width, 0 if mode == "exact" else args.lists, announced)
                    if mode == "kept":  # the same lists as before the restart: the same answers
                        assert [[r["id"] for r in shard.search(q, 10)] for q in queries] == expected
                    del shard
                starts.append(seconds)
                steps.append(step)
            results[mode] = {"start_s": statistics.median(starts), "partition_s": statistics.median(steps),
                             "starts": starts, **({"convert_s": statistics.median(converts)} if converts else {})}
            print(f"{mode:8s} start {results[mode]['start_s']:7.1f} s (partition step "
                  f"{results[mode]['partition_s']:6.1f} s) over {args.repeats} starts: "
                  + ", ".join(f"{s:.1f}" for s in starts)
                  + (f"; converting into a snapshot {results[mode]['convert_s']:.1f} s" if converts else ""), flush=True)
        summary = {"items": args.items, "width": args.width, "lists": args.lists, "fill_s": round(filled, 1),
                   **{mode: {k: (round(v, 2) if isinstance(v, float) else [round(s, 2) for s in v])
                             for k, v in result.items()} for mode, result in results.items()},
                   "peak_mb": {mode: round(mb) for mode, mb in peaks.items()}, "embeddings_mb": round(embeddings_mb),
                   "start_speedup": round(results["rebuilt"]["start_s"] / results["kept"]["start_s"], 2),
                   "snapshot_speedup": round(results["lines"]["start_s"] / results["kept"]["start_s"], 2),
                   "partition_speedup": round(results["rebuilt"]["partition_s"]
                                              / max(results["kept"]["partition_s"], 0.05), 1)}
        print(json.dumps(summary))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
