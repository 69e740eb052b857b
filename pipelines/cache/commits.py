"""Commit each shard of the feature cache on the cluster, as soon as its last row is featurised.

The driver never touches the features. It walks the stream's output blocks by reference (Ray
Data's `iter_internal_ref_bundles`), learns from one small task per bundle which shards' rows
each block holds, and once every row of a shard has been seen it starts a commit task that takes
those blocks as arguments: Ray moves them from the nodes that made them straight to the task,
which writes the shard's Parquet, report and marker (`ops.cache.commit`).

Why: a driver that pulls every row and writes every shard is one process encoding ~2 MiB of S_V
per paper-size sample for every GPU of the cluster (on an H100 node it was the bottleneck until
it had 4 writer threads); here its work is per block, not per byte, and commits spread over
the cluster's CPUs.

Commits of a local cache directory run on the driver's node (the directory is the driver's);
those of an object store (s3://) run wherever Ray places them, near their blocks.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from ray.util import metrics

from ops.cache.commit import commit_shard_from_batches, shard_counts
from ops.cache.feature_cache import FeatureCache

# A block of the stream's output, or the rows [start, end) of one: (ObjectRef, span or None).
Piece = tuple[Hashable, "tuple[int, int] | None"]

# Commits running at once; past this the driver stops pulling output, so the stream waits
# (Ray Data's backpressure) instead of blocks piling up behind slow storage.
MAX_COMMITS = 8
# Bundles whose row counts are being read at once.
MAX_COUNTING = 16


@dataclass
class _Shard:
    seen: int = 0
    total: int = 0
    pieces: dict = field(default_factory=dict)  # Piece -> None: insertion-ordered set


class ShardTracker:
    """Which pieces hold each shard's rows, and when a shard has all of them."""

    def __init__(self) -> None:
        self._shards: dict[str, _Shard] = {}

    def add(self, pieces: list[Piece], counts: list[dict[str, tuple[int, int]]]) -> list[tuple[str, list[Piece]]]:
        """Record the rows per shard of each piece; -> [(shard, its pieces)] for shards now complete."""
        complete = []
        for piece, per_shard in zip(pieces, counts):
            for shard, (rows, total) in per_shard.items():
                state = self._shards.setdefault(shard, _Shard(total=total))
                state.seen += rows
                state.pieces[piece] = None
                if state.seen > state.total:
                    raise RuntimeError(f"shard {shard}: {state.seen} rows seen, {state.total} expected")
                if state.seen == state.total:
                    complete.append((shard, list(self._shards.pop(shard).pieces)))
        return complete

    def incomplete(self) -> list[str]:
        return sorted(self._shards)


def bundle_pieces(bundle) -> list[Piece]:
    """A RefBundle's blocks with their slices. Ray 2.60 internals: `blocks` are BlockEntry(ref,
    metadata) and `slices` runs parallel to them (None = the whole block)."""
    return [(entry.ref, None if span is None else (span.start_offset, span.end_offset))
            for entry, span in zip(bundle.blocks, bundle.slices)]


def _batch(block, span, columns: list[str] | None = None) -> dict:
    from ray.data.block import BlockAccessor

    accessor = BlockAccessor.for_block(block)
    if span is not None:
        accessor = BlockAccessor.for_block(accessor.slice(span[0], span[1]))
    return accessor.to_numpy(columns) if columns else accessor.to_batch_format("numpy")


def _count_rows(spans: list, *blocks) -> list[dict[str, tuple[int, int]]]:
    """Runs where the blocks are; sends back only shard names and counts."""
    return [shard_counts(_batch(block, span, ["shard", "shard_total"])) for block, span in zip(blocks, spans)]


def _commit(cache_url: str, shard: str, digest: str, storage_dtype: str, spans: list, *blocks) -> tuple[dict, float]:
    """-> (the shard's counts, this task's seconds)."""
    started = time.perf_counter()
    batches = [_batch(block, span) for block, span in zip(blocks, spans)]
    counts = commit_shard_from_batches(FeatureCache(cache_url), shard, batches, digest, storage_dtype)
    commit_metrics(cache_url).committed(counts)
    return counts, time.perf_counter() - started


def commit_stream(dataset, cache: FeatureCache, digest: str, storage_dtype: str,
                  max_commits: int = MAX_COMMITS) -> tuple[dict[str, dict], dict]:
    """Run the dataset to the end, committing every shard on the cluster. -> ({shard: its counts},
    the commit stage's row for the summary's stage table). A failed commit stops the run with its
    error as soon as the driver sees it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # A whole CPU each, as the decode tasks: a task asking for none would get a worker process
    # started for it while every pooled one is busy (~1 s of CPU each; end to end -40% on 2 cores).
    count_rows = ray.remote(num_cpus=1)(_count_rows)
    placement = {}
    if cache.is_local:
        placement["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False)
    commit = ray.remote(num_cpus=1, **placement)(_commit)

    tracker = ShardTracker()
    counting: deque = deque()  # (pieces, future of their counts), in stream order
    running: dict = {}  # commit future -> shard
    committed: dict[str, dict] = {}
    task_seconds, first_submit = 0.0, None

    def settle(block_until_below: int) -> None:
        nonlocal task_seconds
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=None if len(running) >= block_until_below else 0)
            if not done:
                return
            shard = running.pop(done[0])
            committed[shard], seconds = ray.get(done[0])  # a failed commit raises here
            task_seconds += seconds

    def absorb(block_until_below: int) -> None:
        nonlocal first_submit
        while counting and (len(counting) >= block_until_below or _ready(counting[0][1])):
            pieces, counts = counting.popleft()
            for shard, shard_pieces in tracker.add(pieces, ray.get(counts)):
                first_submit = first_submit or time.perf_counter()
                spans = [span for _, span in shard_pieces]
                running[commit.remote(cache.url, shard, digest, storage_dtype, spans,
                                      *[ref for ref, _ in shard_pieces])] = shard
            settle(max_commits)

    for bundle in dataset.iter_internal_ref_bundles():
        pieces = bundle_pieces(bundle)
        counting.append((pieces, count_rows.remote([span for _, span in pieces], *[ref for ref, _ in pieces])))
        absorb(MAX_COUNTING)
    absorb(1)  # every bundle counted
    settle(1)  # every commit finished
    if tracker.incomplete():
        raise RuntimeError(f"shards ended incomplete: {tracker.incomplete()}")
    rows = sum(counts["rows"] + sum(counts["bad"].values()) for counts in committed.values())
    seconds = max(time.perf_counter() - (first_submit or time.perf_counter()), 1e-9)
    stage = {"stage": "Commit (tasks)", "rows": rows, "seconds": round(seconds, 2),
             "rows_per_s": round(rows / seconds, 1), "task_seconds": round(task_seconds, 2)}
    return committed, stage


def _ready(future) -> bool:
    import ray

    done, _ = ray.wait([future], timeout=0)
    return bool(done)


# Feature caching's progress as Prometheus metrics, recorded by each shard's commit task (the
# moment a shard's samples are final) and exported by the node's Ray metrics agent beside Ray Data's
# own per-operator metrics (rows and blocks in and out, task and actor counts).
#
# A caching job over billions of samples runs for days; its summary and per-shard reports are
# written as shards commit, but nobody reads a Parquet report to see that a source began sending
# corrupt videos an hour ago. These series show it as it happens, per cache (the output directory's
# last part, e.g. `plm`):
# - `vljepa_cache_shards_committed`, `vljepa_cache_bytes_written`;
# - `vljepa_cache_samples_cached` by `kind` (media kind / task, e.g. `video/caption`);
# - `vljepa_cache_samples_bad` by `reason` (the stable codes of ops/data/samples.py).
# Ray prefixes `ray_` and counters end in `_total`. Outside a Ray worker recording is a no-op.
class CacheCommitMetrics:
    def __init__(self, cache: str):
        self.shards = _tagged(metrics.Counter("vljepa_cache_shards_committed", "feature cache shards committed",
                                              tag_keys=("cache",)), cache)
        self.bytes = _tagged(metrics.Counter("vljepa_cache_bytes_written", "bytes of feature cache shards written",
                                             tag_keys=("cache",)), cache)
        self.cached = _tagged(metrics.Counter("vljepa_cache_samples_cached", "samples cached, by media kind / task",
                                              tag_keys=("cache", "kind")), cache)
        self.bad = _tagged(metrics.Counter("vljepa_cache_samples_bad", "samples skipped, by reason",
                                           tag_keys=("cache", "reason")), cache)

    def committed(self, counts: dict) -> None:
        """A shard's counts as FeatureCache.commit_shard returns them."""
        self.shards.inc()
        if counts["bytes"]:
            self.bytes.inc(counts["bytes"])
        for kind, rows in counts["kinds"].items():
            self.cached.inc(rows, tags={"kind": kind})
        for reason, rows in counts["bad"].items():
            self.bad.inc(rows, tags={"reason": reason})


@functools.lru_cache(maxsize=64)
def commit_metrics(cache_url: str) -> CacheCommitMetrics:
    """One set per cache per worker process: a commit task's worker commits many shards."""
    return CacheCommitMetrics(cache_url.rstrip("/").rsplit("/", 1)[-1])


def _tagged(metric, cache: str):
    metric.set_default_tags({"cache": cache})
    return metric
