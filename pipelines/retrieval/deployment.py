"""The retrieval index's Ray Serve deployment: a replica opens the LanceDB table `vljepa
index-build` wrote (ops/retrieval/table.py) and answers the ingress's searches, listings, adds and
deletes. It never fills the table from caches.

Replicas: any number may share one table (`index_replicas`), each a reader and a writer. Every
write is one LanceDB commit (a merge on `id` for an add, a delete), which LanceDB serialises
between writers with retries, so two replicas adding at once lose nothing; with `refresh_s` 0 each
read first looks for commits made elsewhere, so a search finds an item another replica added.

Upkeep, in the background on the replica's event loop, searches going on meanwhile: every
REFRESH_S the table's gauges (rows, version, ANN coverage); once HTTP writes have piled up
(`compact_after_writes`, or any for `compact_after_s`), LanceDB's optimize(): it merges the small
files each write leaves, adds the new rows to the ANN index and removes versions older than
`keep_versions_s`. A failed compaction is logged, counted, and tried again `compact_after_s` later.

Apart from the model deployments (pipelines/serve/deployments.py) because it loads no model: a
replica importing torch and transformers would hold ~320 MB more for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from ray import serve

from ops.retrieval.table import (
    ITEM_COLUMNS,
    ann_stats,
    item,
    open_table_async,
    prefix_filter,
    rows_table,
    schema_width,
    search,
    sql_string,
    vector_index_name,
    vector_query,
)
from pipelines.serve.deployments import Answers, notice
from pipelines.serve.metrics import IndexMetrics

REFRESH_S = 1.0  # under the shortest report interval Ray allows (1 s), so no export misses a gauge


@dataclass(frozen=True)
class IndexSettings:
    probe: int | None = None  # IVF partitions a search probes unless the request says (None: LanceDB's, 20)
    refine: int = 10  # re-score refine x k candidates with their stored vectors (0: the index's codes alone)
    refresh_s: float = 0.0  # how stale a read may be (LanceDB's read_consistency_interval)
    compact_after_writes: int = 64  # HTTP writes that make a compaction due
    compact_after_s: float = 60.0  # ... or any write this long ago
    keep_versions_s: float = 600.0  # table versions kept: a reader on an older one may still be scanning it


class ProbeOutOfRange(ValueError):
    """A search's `probe` above the ANN index's partitions (the ingress answers 422)."""


@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class RetrievalIndex(Answers):
    async def __init__(self, uri: str, model: str, settings: IndexSettings = IndexSettings()):
        """uri: the index (a LanceDB database, absolute); model: the serving model's fingerprint
        (ops.retrieval.table.model_fingerprint): an index of another model's predictions is refused."""
        self.settings = settings
        self.table = await open_table_async(uri, model, settings.refresh_s)
        self.schema = await self.table.schema()
        self.width = schema_width(self.schema)
        self.metrics = IndexMetrics(uri)
        self.ann: dict | None = None  # the ANN index's statistics (partitions: what `probe` may ask)
        self.ann_name: str | None = None
        self.seen_version = -1  # the table version self.ann was read at
        self.writes_pending, self.first_pending = 0, 0.0
        self.retry_after = 0.0  # after a failed compaction, none before this (time.monotonic)
        await self.refresh()
        notice(logging.INFO, "retrieval index %s: %d rows, %s", uri, await self.table.count_rows(),
               f"{self.ann['type']} ANN index of {self.ann['partitions']} partitions" if self.ann else "exact search")
        self.upkeep = asyncio.get_running_loop().create_task(self.keep_up())

    def close(self) -> None:
        upkeep = getattr(self, "upkeep", None)
        if upkeep is not None:
            upkeep.cancel()

    def __del__(self):
        self.close()

    # -- requests --------------------------------------------------------------------------------
    async def search(self, query: np.ndarray, k: int, prefix: str | None = None,
                     probe: int | None = None) -> list[dict]:
        """The k items nearest `query` ({id, kind, caption, source, score}), best first, equal scores
        by id."""
        if probe is not None and self.ann is not None and probe > self.ann["partitions"]:
            raise ProbeOutOfRange(f"probe {probe} exceeds the index's {self.ann['partitions']} partitions")
        probe = probe if probe is not None else self.settings.probe
        started = time.perf_counter()
        query = np.asarray(query, dtype=np.float32)

        async def fetch(rows: int):
            return await vector_query(self.table.vector_search(query), rows, prefix, probe,
                                      self.settings.refine).to_arrow()

        hits = await search(fetch, k)
        self.metrics.searched(time.perf_counter() - started)
        return hits

    async def page(self, offset: int, limit: int, prefix: str | None = None) -> tuple[list[dict], int]:
        """(items offset .. offset + limit in the table's order, how many there are), of the items
        whose id starts with `prefix` when given."""
        where = prefix_filter(prefix)
        query = self.table.query().select(ITEM_COLUMNS).offset(offset).limit(limit)
        if where:
            query = query.where(where)
        rows = (await query.to_arrow()).to_pylist() if limit else []
        return [item(row) for row in rows], await self.table.count_rows(where)

    async def add(self, item_id: str, embedding: np.ndarray, kind: str) -> dict:
        """Adds (or replaces) an item of the client's: no caption, no source cache, so no
        index-build ever drops it."""
        embedding = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if embedding.shape != (self.width,) or not np.isfinite(embedding).all():
            raise ValueError(f"an index item needs {self.width} finite values, got shape {embedding.shape}")
        row = rows_table(self.schema, [item_id], [kind], [None], [None], embedding[None])
        await self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(row)
        self.wrote()
        return {"id": item_id, "kind": kind, "caption": None, "source": None}

    async def delete(self, item_id: str) -> bool:
        where = f"id = {sql_string(item_id)}"
        if not await self.table.count_rows(where):  # an unknown id commits nothing
            return False
        deleted = (await self.table.delete(where)).num_deleted_rows
        self.wrote()
        return deleted > 0

    # -- upkeep ----------------------------------------------------------------------------------
    def wrote(self) -> None:
        if not self.writes_pending:
            self.first_pending = time.monotonic()
        self.writes_pending += 1

    def compaction_due(self) -> bool:
        now = time.monotonic()
        return self.writes_pending > 0 and now >= self.retry_after and (
            self.writes_pending >= self.settings.compact_after_writes
            or now - self.first_pending >= self.settings.compact_after_s)

    async def compact(self) -> bool:
        """LanceDB's optimize (compaction, the ANN index brought up to date, old versions removed)
        of the writes so far. -> whether it succeeded."""
        pending, started = self.writes_pending, time.perf_counter()
        try:
            await self.table.optimize(cleanup_older_than=timedelta(seconds=self.settings.keep_versions_s))
        except Exception as error:  # another replica's compaction, a full disk: tried again when next due
            self.metrics.compacted(False, time.perf_counter() - started)
            self.retry_after = time.monotonic() + self.settings.compact_after_s
            notice(logging.ERROR, "retrieval index: compaction failed (tried again in %.0f s): %s",
                   self.settings.compact_after_s, error)
            return False
        self.writes_pending -= pending  # writes that came in meanwhile stay pending
        self.first_pending = time.monotonic()
        self.metrics.compacted(True, time.perf_counter() - started)
        return True

    async def refresh(self) -> None:
        """The table's gauges; the ANN index's partitions again whenever the table changed (a
        compaction may have merged small partitions, index-build may have trained a new index)."""
        version = await self.table.version()
        if version != self.seen_version:
            indices = await self.table.list_indices()
            name = vector_index_name(indices)
            self.ann = await asyncio.to_thread(ann_stats, await self.table.to_lance(), name) if name else None
            self.ann_name, self.seen_version = name, version
        rows = await self.table.count_rows()
        covered = await self.table.index_stats(self.ann_name) if self.ann_name else None
        self.metrics.table(rows, version, covered.num_indexed_rows if covered else 0,
                           covered.num_unindexed_rows if covered else rows)

    async def keep_up(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                if self.compaction_due():
                    await self.compact()
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a transient storage error: the next tick tries again
                notice(logging.WARNING, "retrieval index: upkeep: %s", error)
