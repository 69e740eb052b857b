"""A retrieval index shard's metrics reach Prometheus through Ray's metrics agent: what it holds,
and its background builds and compactions, done and failed. The shard runs in a real Ray actor of
the session's instance (as a Serve replica runs it), and the test reads the agent's /metrics."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from ops.vector_index import TRAIN_PER_LIST
from pipelines.exported_metrics import exported, wait_for

WIDTH, LISTS = 16, 2
GAUGE_DROPPED_WITHIN_S = 30.0  # measured: a gauge set once left the export 12-24 s after (Ray 2.60, 1 s reports)
SHARD, SHARDS = 5, 8  # a shard number no Serve application of the session uses: its series are this test's


def _vectors(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, WIDTH)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def shard(ray_instance, tmp_path):
    import ray

    from pipelines.serve_index import RetrievalIndex

    @ray.remote(num_cpus=0)
    class Shard(RetrievalIndex.func_or_class):
        def call(self, method: str, *args):
            return getattr(self, method)(*args)

        def compact_at_every_change_on_a_full_disk(self) -> None:
            """From now on any line makes a compaction due, and a snapshot's rename fails as on a
            full disk (OSError 28); other renames work."""
            import ops.index_log
            import pipelines.index_upkeep

            pipelines.index_upkeep.COMPACT_WHILE_SERVING_BYTES = 0
            ops.index_log.COMPACT_SHARE = 10**9
            real_replace = os.replace

            def disk_full(source, target):
                if "snapshot-" in str(target):
                    raise OSError(28, "No space left on device")
                return real_replace(source, target)

            os.replace = disk_full

    actor = Shard.remote(WIDTH, str(tmp_path), "model-a", shard=SHARD, shards=SHARDS, lists=LISTS, probe=1)
    yield actor
    ray.kill(actor)


def _value(port, name, **labels):
    return exported(port, f"ray_vljepa_{name}", shard=str(SHARD), **labels)


def test_a_shards_state_and_background_jobs_are_exported(shard, metrics_port):
    import ray

    count = TRAIN_PER_LIST * LISTS + 10
    vectors = _vectors(count + 1, seed=3)
    assert ray.get(shard.call.remote("add_many", [(f"clip{i}", vectors[i], {}) for i in range(count)])) == count
    assert ray.get(shard.call.remote("wait_for_upkeep", 60))  # a build, then the compaction it makes due

    def jobs(job, outcome, expected):
        return wait_for(metrics_port, "ray_vljepa_index_upkeep_jobs_total", lambda v: v >= expected,
                        shard=str(SHARD), job=job, outcome=outcome)

    assert jobs("build", "done", 1) == 1
    assert jobs("compaction", "done", 1) == 1
    builds_observed = "index_upkeep_seconds_count"  # a histogram's _count: builds observed, not their time
    assert _value(metrics_port, builds_observed, job="build") == 1
    assert _value(metrics_port, "index_items") == count
    assert _value(metrics_port, "index_lists") == LISTS
    assert _value(metrics_port, "index_unsnapshotted_bytes") == 0  # all of it in the snapshot

    # a compaction that fails: counted as failed; the shard holds what it did, its log the change
    ray.get(shard.compact_at_every_change_on_a_full_disk.remote())
    assert ray.get(shard.call.remote("delete", "clip0"))
    assert ray.get(shard.call.remote("wait_for_upkeep", 60))
    assert jobs("compaction", "failed", 1) == 1
    assert _value(metrics_port, "index_upkeep_jobs_total", job="compaction", outcome="done") == 1
    assert _value(metrics_port, "index_items") == count - 1
    assert _value(metrics_port, "index_unsnapshotted_bytes") > 0  # the delete's line, not in a snapshot

    # a shard nobody writes to stays exported: a Ray gauge set once drops out of the export within
    # half a minute (serve_metrics._GaugeRefresher sets them again every second)
    time.sleep(GAUGE_DROPPED_WITHIN_S)
    assert _value(metrics_port, "index_items") == count - 1 and _value(metrics_port, "index_lists") == LISTS
