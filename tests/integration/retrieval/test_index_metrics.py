"""The retrieval index's metrics reach Prometheus through Ray's metrics agent: what its table reports
(rows, version, rows its ANN index covers and not), its searches, and its background compactions,
done and failed. The replica runs in a real Ray actor of the session's instance (as Serve runs
it), and the test reads the agent's /metrics, the series of this test's index (tagged with its URI)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipelines.cluster.exported_metrics import exported, wait_for
from tests.retrieval_tables import clustered, unit_rows, write_table

ROWS, WIDTH, PARTITIONS = 3000, 32, 6
GAUGE_DROPPED_WITHIN_S = 90.0  # a gauge set once left the export 12-24 s after (measured: Ray 2.60, 1 s reports)


@pytest.fixture
def replica(ray_instance, tmp_path):
    import ray

    from pipelines.retrieval.deployment import IndexSettings, RetrievalIndex

    @ray.remote(num_cpus=0)
    class Replica:
        """The deployment's class in an async actor: its upkeep runs on the actor's event loop."""

        async def open(self, uri: str) -> None:
            self.index = RetrievalIndex.func_or_class.__new__(RetrievalIndex.func_or_class)
            await self.index.__init__(uri, "model-a", IndexSettings(compact_after_writes=4, keep_versions_s=1))

        async def call(self, method: str, *args):
            return await getattr(self.index, method)(*args)

        def fail_compactions(self) -> None:
            """From now on LanceDB's optimize fails, as on a full disk."""
            async def disk_full(**_):
                raise OSError(28, "No space left on device")

            self.index.table.optimize = disk_full

        def set_once(self, uri: str) -> None:
            """A gauge set once and never again: the control that shows how long Ray keeps exporting one."""
            from ray.util.metrics import Gauge

            self.control = Gauge("vljepa_test_set_once", tag_keys=("index",))
            self.control.set(1.0, tags={"index": uri})

    write_table(str(tmp_path), clustered(ROWS, WIDTH, clusters=8, seed=5), fingerprint="model-a",
                partitions=PARTITIONS)
    actor = Replica.remote()
    ray.get(actor.open.remote(str(tmp_path)))
    yield actor, {"index": str(tmp_path)}
    ray.kill(actor)


def test_the_tables_state_searches_and_compactions_are_exported(replica, metrics_port):
    import ray

    actor, mine = replica

    def value(name: str, **labels: str) -> float:
        return exported(metrics_port, f"ray_vljepa_{name}", **mine, **labels)

    def reaches(name: str, expected: float, **labels: str) -> float:
        return wait_for(metrics_port, f"ray_vljepa_{name}", lambda v: v == expected, **mine, **labels)

    assert reaches("index_rows", ROWS) == ROWS and reaches("index_indexed_rows", ROWS) == ROWS
    assert value("index_unindexed_rows") == 0
    version = value("index_version")
    for seed in range(3):
        ray.get(actor.call.remote("search", unit_rows(np.random.default_rng(seed).standard_normal((1, WIDTH)))[0], 5))
    assert reaches("index_search_seconds_count", 3) == 3  # a histogram's _count: searches observed

    # 4 adds: rows not in the ANN index yet (searched exactly), then the compaction they make due
    # brings the index up to date
    for i in range(4):
        ray.get(actor.call.remote("add", f"added/{i}", unit_rows(np.ones((1, WIDTH)))[0], "video"))
    assert wait_for(metrics_port, "ray_vljepa_index_compactions_total", lambda v: v >= 1, outcome="done", **mine) == 1
    assert reaches("index_rows", ROWS + 4) == ROWS + 4
    assert reaches("index_indexed_rows", ROWS + 4) == ROWS + 4 and value("index_unindexed_rows") == 0
    assert value("index_version") > version + 4  # the adds' commits and the compaction's
    assert value("index_compaction_seconds_count") == 1

    # a compaction that fails: counted as failed; the table keeps every write, searched exactly
    ray.get(actor.fail_compactions.remote())
    for i in range(4):
        ray.get(actor.call.remote("add", f"more/{i}", unit_rows(np.ones((1, WIDTH)))[0], "video"))
    assert wait_for(metrics_port, "ray_vljepa_index_compactions_total", lambda v: v >= 1, outcome="failed",
                    **mine) == 1
    assert reaches("index_rows", ROWS + 8) == ROWS + 8 and reaches("index_unindexed_rows", 4) == 4
    time.sleep(3)  # upkeep ticks: a failed compaction is not tried again at each (only compact_after_s later)
    assert value("index_compactions_total", outcome="failed") == 1

    # an index nobody writes to stays exported: a Ray gauge set once drops out of the export after a
    # while (the control, set beside it), while the upkeep sets the index's again every second
    ray.get(actor.set_once.remote(mine["index"]))
    assert wait_for(metrics_port, "ray_vljepa_test_set_once", lambda v: v == 1, **mine) == 1
    assert wait_for(metrics_port, "ray_vljepa_test_set_once", lambda v: v == 0, timeout_s=GAUGE_DROPPED_WITHIN_S,
                    **mine) == 0
    assert value("index_rows") == ROWS + 8 and value("index_indexed_rows") == ROWS + 4
