"""The serving application's own metrics, exported through Ray's metrics agent to Prometheus next
to Ray Serve's (requests, latencies and errors per route, replica queues, batch sizes and waits:
https://docs.ray.io/en/latest/serve/monitoring.html). Ray prefixes each name with `ray_` and Serve
tags each series with its application, deployment and replica.

These cover what Serve cannot see from outside a replica:
- the retrieval index: what its LanceDB table reports (rows, version, rows its ANN index covers and
  rows it does not yet, which a search scans exactly), each search's latency, and the background
  compactions (LanceDB's optimize) done or failed, with their durations: a failing compaction is
  otherwise an ERROR line in one replica's log. Every index replica reports the table it reads:
  take the maximum over replicas, not the sum;
- the text deployment's label cache: hits and misses (a low hit rate: candidate labels that change
  per request, or a cache too small);
- the ingress's media: decoded per kind, with the decode's time (most of a request's CPU on a GPU
  node: docs/benchmarks.md), and refused per reason (the stable codes of ops/data/samples.py, and
  `not_media`).

Where to scrape: each node's metrics agent (`ray start --metrics-export-port=PORT`; `vljepa serve
--metrics-port PORT` for a local instance); docs/cluster.md. Outside a Ray worker (unit tests, a
shard built in-process) recording is a no-op.
"""

from __future__ import annotations

from ray.serve import metrics

NOT_MEDIA = "not_media"  # bytes that are no image or video format (a 415)
FRAME_TOO_LARGE = "frame_too_large"  # a live feed's frame over the size limit (its 413)
COMPACTION_SECONDS = [0.1, 1, 10, 60, 300, 1800, 3600]
SEARCH_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
DECODE_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]


class IndexMetrics:
    """The retrieval index as its table reports it, and this replica's searches and compactions,
    each series tagged with the index's URI. The table's gauges are set again at every refresh (a
    Ray gauge not set for half a minute drops out of its agent's export: measured, Ray 2.60), which
    the replica's upkeep does every second."""

    def __init__(self, index: str):
        tags, keys = {"index": index}, ("index",)
        self.rows = _tagged(metrics.Gauge("vljepa_index_rows", "rows of the index table", tag_keys=keys), tags)
        self.version = _tagged(metrics.Gauge("vljepa_index_version", "the index table's version (one per commit)",
                                             tag_keys=keys), tags)
        self.indexed = _tagged(metrics.Gauge("vljepa_index_indexed_rows", "rows the ANN index covers (0: no ANN "
                                             "index)", tag_keys=keys), tags)
        self.unindexed = _tagged(metrics.Gauge("vljepa_index_unindexed_rows", "rows added since the ANN index was "
                                               "last brought up to date, searched exactly (all rows without an ANN "
                                               "index)", tag_keys=keys), tags)
        self.search_seconds = _tagged(metrics.Histogram("vljepa_index_search_seconds", "time to answer a search",
                                                        boundaries=SEARCH_SECONDS, tag_keys=keys), tags)
        self.compactions = _tagged(metrics.Counter("vljepa_index_compactions", "background compactions (LanceDB "
                                                   "optimize) by outcome (done, failed)",
                                                   tag_keys=("index", "outcome")), tags)
        self.compaction_seconds = _tagged(metrics.Histogram("vljepa_index_compaction_seconds", "how long a "
                                                            "compaction took, done or failed",
                                                            boundaries=COMPACTION_SECONDS, tag_keys=keys), tags)

    def table(self, rows: int, version: int, indexed: int, unindexed: int) -> None:
        self.rows.set(rows)
        self.version.set(version)
        self.indexed.set(indexed)
        self.unindexed.set(unindexed)

    def searched(self, seconds: float) -> None:
        self.search_seconds.observe(seconds)

    def compacted(self, done: bool, seconds: float) -> None:
        self.compactions.inc(tags={"outcome": "done" if done else "failed"})
        self.compaction_seconds.observe(seconds)


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
        self.rejected = metrics.Counter("vljepa_media_rejected", "uploads refused, by reason (ops/data/samples.py codes, "
                                        "not_media)", tag_keys=("reason",))

    def decoded_one(self, kind: str, seconds: float) -> None:
        self.decoded.inc(tags={"kind": kind})
        self.decode_seconds.observe(seconds, tags={"kind": kind})

    def rejected_one(self, reason: str) -> None:
        self.rejected.inc(tags={"reason": reason})


def _tagged(metric, tags: dict[str, str]):
    metric.set_default_tags(dict(tags))  # a copy: Serve adds its own tags to the dict it is given
    return metric
