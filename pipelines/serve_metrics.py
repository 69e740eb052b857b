"""The serving application's own metrics, exported through Ray's metrics agent to Prometheus next
to Ray Serve's (requests, latencies and errors per route, replica queues, batch sizes and waits:
https://docs.ray.io/en/latest/serve/monitoring.html). Ray prefixes each name with `ray_` and Serve
tags each series with its application, deployment and replica.

These cover what Serve cannot see from outside a replica:
- a retrieval index shard: items held, lists (0: exact search), bytes of log since the last
  snapshot (what a restart replays; a compaction brings it back down), and its background jobs
  (builds, compactions) done or failed, with their durations: a failing compaction is otherwise an
  ERROR line in one replica's log;
- the text deployment's label cache: hits and misses (a low hit rate: candidate labels that change
  per request, or a cache too small);
- the ingress's media: decoded per kind, with the decode's time (most of a request's CPU on a GPU
  node: docs/benchmarks.md), and refused per reason (the stable codes of ops/errors.py, and
  `not_media`).

Where to scrape: each node's metrics agent (`ray start --metrics-export-port=PORT`; `vljepa serve
--metrics-port PORT` for a local instance); docs/cluster.md. Outside a Ray worker (unit tests, a
shard built in-process) recording is a no-op.
"""

from __future__ import annotations

import threading
import time
import weakref

from ray.serve import metrics

from ops.index_log import IndexLog
from ops.vector_index import VectorIndex

NOT_MEDIA = "not_media"  # bytes that are no image or video format (a 415)
FRAME_TOO_LARGE = "frame_too_large"  # a live feed's frame over the size limit (its 413)
UPKEEP_SECONDS = [0.1, 1, 10, 60, 300, 1800, 3600]
DECODE_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]


class IndexShardMetrics:
    """One retrieval index shard's state and background jobs."""

    def __init__(self, shard: int):
        tags = {"shard": str(shard)}
        self.items = _tagged(metrics.Gauge("vljepa_index_items", "items the shard holds", tag_keys=("shard",)), tags)
        self.lists = _tagged(metrics.Gauge("vljepa_index_lists", "lists the shard's items are partitioned under (0: "
                                           "exact search)", tag_keys=("shard",)), tags)
        self.log_bytes = _tagged(metrics.Gauge(
            "vljepa_index_unsnapshotted_bytes", "bytes of the store's log since its last snapshot, which a restart "
            "replays (0 without a store)", tag_keys=("shard",)), tags)
        self.jobs = _tagged(metrics.Counter(
            "vljepa_index_upkeep_jobs", "background jobs (job: build, compaction) by outcome (done, failed)",
            tag_keys=("shard", "job", "outcome")), tags)
        self.job_seconds = _tagged(metrics.Histogram(
            "vljepa_index_upkeep_seconds", "how long a background job took, done or failed", boundaries=UPKEEP_SECONDS,
            tag_keys=("shard", "job")), tags)
        self.values = (0.0, 0.0, 0.0)  # the gauges' last values: items, lists, log bytes
        _refreshed.add(self)  # set again every REFRESH_S, or Ray drops them from the export

    def held(self, index: VectorIndex, log: IndexLog | None) -> None:
        """After a change: what the shard holds now."""
        self.values = (len(index), index.lists if index.centroids is not None else 0,
                       log.change_bytes if log is not None else 0)
        self.refresh()

    def refresh(self) -> None:
        items, lists, log_bytes = self.values
        self.items.set(items)
        self.lists.set(lists)
        self.log_bytes.set(log_bytes)

    def job(self, kind: str, done: bool, seconds: float) -> None:
        self.jobs.inc(tags={"job": kind, "outcome": "done" if done else "failed"})
        self.job_seconds.observe(seconds, tags={"job": kind})


class LabelCacheMetrics:
    def __init__(self):
        self.lookups = metrics.Counter("vljepa_label_cache_lookups", "candidate label texts looked up in the text "
                                       "deployment's cache, by outcome (hit, miss)", tag_keys=("outcome",))

    def looked_up(self, hits: int, misses: int) -> None:
        if hits:
            self.lookups.inc(hits, tags={"outcome": "hit"})
        if misses:
            self.lookups.inc(misses, tags={"outcome": "miss"})


class MediaMetrics:
    def __init__(self):
        self.decoded = metrics.Counter("vljepa_media_decoded", "uploads decoded, by kind (image, video, stream)",
                                       tag_keys=("kind",))
        self.decode_seconds = metrics.Histogram("vljepa_media_decode_seconds", "time to decode and sample an upload",
                                                boundaries=DECODE_SECONDS, tag_keys=("kind",))
        self.rejected = metrics.Counter("vljepa_media_rejected", "uploads refused, by reason (ops/errors.py codes, "
                                        "not_media)", tag_keys=("reason",))

    def decoded_one(self, kind: str, seconds: float) -> None:
        self.decoded.inc(tags={"kind": kind})
        self.decode_seconds.observe(seconds, tags={"kind": kind})

    def rejected_one(self, reason: str) -> None:
        self.rejected.inc(tags={"reason": reason})


class _GaugeRefresher:
    """Sets every live shard's gauges again every REFRESH_S seconds, from one thread per process.
    A Ray gauge set once drops out of its agent's export within half a minute of its last set
    (measured, Ray 2.60): a shard nobody writes to for a while would vanish from the dashboards,
    its items read as none."""

    def __init__(self):
        self.metrics: weakref.WeakSet[IndexShardMetrics] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, shard_metrics: IndexShardMetrics) -> None:
        with self.lock:
            self.metrics.add(shard_metrics)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True, name="vljepa-gauge-refresh")
                self.thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(REFRESH_S)
            with self.lock:
                live = list(self.metrics)
            for shard_metrics in live:
                shard_metrics.refresh()


REFRESH_S = 1.0  # under the shortest report interval Ray allows (1 s), so no export misses a gauge
_refreshed = _GaugeRefresher()


def _tagged(metric, tags: dict[str, str]):
    metric.set_default_tags(dict(tags))  # a copy: Serve adds its own tags to the dict it is given
    return metric
