"""Feature caching's progress as Prometheus metrics, recorded by each shard's commit task (the
moment a shard's samples are final) and exported by the node's Ray metrics agent beside Ray Data's
own per-operator metrics (rows and blocks in and out, task and actor counts).

A caching job over billions of samples runs for days; its summary and per-shard reports are
written as shards commit, but nobody reads a Parquet report to see that a source began sending
corrupt videos an hour ago. These series show it as it happens, per cache (the output directory's
last part, e.g. `plm`):
- `vljepa_cache_shards_committed`, `vljepa_cache_bytes_written`;
- `vljepa_cache_samples_cached` by `kind` (media kind / task, e.g. `video/caption`);
- `vljepa_cache_samples_bad` by `reason` (the stable codes of ops/data/errors.py).
Ray prefixes `ray_` and counters end in `_total`. Outside a Ray worker recording is a no-op.
"""

from __future__ import annotations

import functools

from ray.util import metrics


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
