"""The retrieval index's Ray Serve deployment: one replica per shard of the video index (id -> Ŝ_Y),
add / list / delete / search, kept on disk across restarts when given a store directory.

Apart from the model deployments (pipelines/serve_deployments.py) because it loads no model: a
replica importing torch and transformers holds ~320 MB more of its own memory (USS), once per
shard of a split index, for nothing.
"""

from __future__ import annotations

import functools
import logging
import threading

import numpy as np
from ray import serve

from ops.coalesced_calls import CoalescedCalls
from ops.index_log import IndexLog
from ops.index_shards import shard_store
from ops.vector_index import GEMM_FROM, VectorIndex
from pipelines.index_upkeep import ShardUpkeep
from pipelines.replica_notice import notice
from pipelines.serve_metrics import IndexShardMetrics
from pipelines.serve_ready import Answers


def one_at_a_time(method):
    """Serve runs a replica's sync methods in a thread pool, so an index shard's requests ran at
    once: a delete moving rows under a search's scores could name another item (or raise), and
    concurrent searches, each a multithreaded BLAS product over the whole matrix, thrashed the
    cores (8 at once on 2 cores: 4.9 searches/s, one at a time 15; benchmarks/index_shards.py)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


def changes_items(method):
    """one_at_a_time, for a method that adds or deletes items: the shard's gauges follow it."""

    @functools.wraps(method)
    def changed(self, *args, **kwargs):
        answer = method(self, *args, **kwargs)
        self.metrics.held(self.index, self.log)
        return answer

    return one_at_a_time(changed)


# How long a starting replica waits for its store (a stopping replica of the same shard finishing
# its requests and its background job, CLOSE_WAIT_S), and how long a stopping one waits for that
# job before giving it up.
STORE_LOCK_WAIT_S = 600.0
CLOSE_WAIT_S = 60.0


# One replica per shard: a shard is state, and every add to it must be seen by its searches. An
# index of N shards is N of these deployments (pipelines.serve.index_deployment_name), each
# holding the ids that hash to it (ops/index_shards.py).
@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class RetrievalIndex(Answers):
    def __init__(self, width: int, store: str | None = None, model: str | None = None, shard: int = 0,
                 shards: int = 1, search_batch: int = 32, lists: int = 0, probe: int = 1):
        """width: the model's embedding width. store: a directory whose log (ops/index_log.py) keeps
        the items across restarts (this shard's part of it: ops.index_shards.shard_store); None: in
        memory only, and a restarted replica starts empty. model: the serving model's
        prediction_fingerprint: a store of another model's is refused. shard, shards: which part
        of a split index this replica holds. search_batch: the most queued searches answered in one
        pass (1: one at a time, as before batching). lists, probe: partition this shard's items
        under `lists` centroids and search the `probe` nearest a query (0 lists: exact search;
        ops/vector_index.py)."""
        self.lock = threading.Lock()  # held by every method but ready(), which answers /readyz mid-search
        # a batch smaller than GEMM_FROM is searched query by query: no gain in waiting for fewer
        self.queued_searches = CoalescedCalls(self.search_together, max_batch=search_batch, fill_to=GEMM_FROM)
        if store:
            store = str(shard_store(store, shard, shards))
        # the store is this replica's alone: a stopping replica of the same shard (a redeploy) gives
        # it up first, its kept changes then read here (ops/store_lock.py)
        self.log = IndexLog(store, model, lock_wait_s=STORE_LOCK_WAIT_S, waiting=functools.partial(
            notice, logging.WARNING, "index store %s: waiting for %s to give it up (a stopping replica of this shard?)",
            store)) if store else None
        self.announce = functools.partial(notice, logging.INFO, "%s")
        if self.log:  # a kept partition is taken as it was: its items go back to their lists unscored
            self.index = self.log.open(width, lists, probe, self.announce, build_later=True, compact_later=True)
        else:
            self.index = VectorIndex(width)
            self.index.build_later = True
            self.index.partition(lists, probe, self.announce)
        # partitions are built, and the store compacted, in a thread, the shard answering meanwhile
        # (pipelines/index_upkeep.py)
        self.metrics = IndexShardMetrics(shard)
        self.upkeep = ShardUpkeep(self.lock, self.index, self.log, self._built, self._finished)
        # ids of cache items deleted over HTTP: add_many (an ingress adding its --index-cache, at
        # every start and on every new replica) skips them; the store keeps them across restarts
        self.removed: set[str] = set(self.log.removed) if self.log else set()
        if self.log and self.log.skipped:
            notice(logging.WARNING, "index store %s: %d unreadable line(s) skipped (a write cut short?)",
                   store, self.log.skipped)
        if self.log and self.log.unusable:
            notice(logging.WARNING, "index store: %s", self.log.unusable)
        with self.lock:  # a store of enough items and no kept partition (or other --index-lists), or
            self.upkeep.start_if_due(least_change_bytes=0)  # of lines since its snapshot past their share
            self.metrics.held(self.index, self.log)

    def close(self) -> None:
        """Stops the shard's background jobs (waiting up to CLOSE_WAIT_S for one running) and gives
        its store up, for the next replica of this shard. Serve calls it (as __del__) when the
        replica stops; a request after it that would write is refused."""
        upkeep = getattr(self, "upkeep", None)  # None: __init__ failed before it
        if upkeep is not None:
            upkeep.close(CLOSE_WAIT_S)
        log = getattr(self, "log", None)
        if log is not None:
            with self.lock:
                log.close()

    def __del__(self):
        self.close()

    def _finished(self, kind: str, done: bool, seconds: float) -> None:
        self.metrics.job(kind, done, seconds)
        with self.lock:
            self.metrics.held(self.index, self.log)

    def _built(self, scored: int, seconds: float) -> None:
        """A background build's lists taken (lock held): their centroids kept in the store (the
        snapshot of the items filed under them is written next, in the background), and said."""
        if self.log:
            self.log.keep(self.index, compact_later=True)
        self.announce(f"retrieval index: {len(self.index)} items filed under {self.index.lists} lists in {seconds:.1f} s "
                      f"(built while the shard kept answering; {scored} added or changed meanwhile scored "
                      f"at the end; a search probes {self.index.probe})")

    def wait_for_upkeep(self, timeout: float | None = None) -> bool:
        """Waits for a partition build or a store compaction in progress, if any (and those due
        after it). -> whether none runs now."""
        return self.upkeep.wait(timeout)

    @changes_items
    def add(self, item_id: str, embedding: np.ndarray, meta: dict) -> dict:
        embedding = self.index.vector(embedding)  # checked before it is logged
        targets = self.index.lists_for(embedding[None])  # found once, for the log and the index
        target = None if targets is None else int(targets[0])
        if self.log:
            self.log.add(item_id, embedding, meta, target)  # on disk before it is answered
        self.index.add(item_id, embedding, meta, target)
        self.upkeep.note([item_id])
        self.removed.discard(item_id)  # an explicit add brings a deleted cache item back
        self.upkeep.start_if_due()
        return {"id": item_id, **meta}

    @changes_items
    def add_many(self, items: list[tuple[str, np.ndarray, dict]]) -> int:
        """Adds (id, embedding, meta) items in one call and, with a store, one synced write. An
        ingress sends only what `missing` named, but two replicas starting together both predict
        them, and an item may be deleted while they do: so items the index already holds
        unchanged are skipped (the second replica writes nothing) and deleted ones are not added
        back. -> how many were new or changed."""
        fresh = [(item_id, self.index.vector(embedding), meta) for item_id, embedding, meta in items
                 if item_id not in self.removed]
        fresh = [item for item in fresh if not self.index.holds(*item)]
        if not fresh:
            return 0
        targets = self.index.lists_for(np.stack([embedding for _, embedding, _ in fresh]))
        if self.log:
            self.log.add_many(fresh, targets)
        self.index.add_many(fresh, targets)
        self.upkeep.note(item_id for item_id, _, _ in fresh)
        self.upkeep.start_if_due()
        return len(fresh)

    @one_at_a_time
    def missing(self, items: list[tuple[str, dict]]) -> list[str]:
        """Of (id, meta) items an ingress would add from a cache: the ids to predict and add, those
        not held with that meta and not deleted over HTTP. Within one application the model is
        fixed (and a store is this model's), so an item held with the same meta holds the same Ŝ_Y."""
        return [item_id for item_id, meta in items
                if item_id not in self.removed and self.index.meta.get(item_id) != meta]

    @changes_items
    def drop_stale_cache_items(self, listed: dict[str, list[str]]) -> list[str]:
        """{cache: the ids of its items an ingress found in it} for the caches the application serves:
        drops the items of a cache (meta "source") that it no longer lists, or whose cache is no
        longer served, so the index mirrors its caches as they are now (a cache rebuilt with fewer
        samples, an `--index-cache` dropped, ids of an older scheme in a kept store). Items added
        over HTTP have no source and are never touched. No tombstones: a served cache that lists
        the item again brings it back. -> the dropped ids."""
        wanted = {source: set(ids) for source, ids in listed.items()}
        stale = [item_id for item_id, meta in self.index.meta.items()
                 if "source" in meta and item_id not in wanted.get(meta["source"], ())]
        if self.log:
            self.log.delete_many(stale)
        for item_id in stale:
            self.index.delete(item_id)
        self.upkeep.note_deleted(stale)
        self.upkeep.start_if_due()  # the log has grown
        return stale

    @one_at_a_time
    def page(self, offset: int = 0, limit: int | None = None, prefix: str | None = None) -> tuple[list[dict], int]:
        """(items offset .. offset + limit in insertion order (all by default), how many there are),
        of the items whose id starts with `prefix` when given."""
        return self.index.list(offset, limit, prefix), self.index.count(prefix)

    @changes_items
    def delete(self, item_id: str) -> bool:
        if item_id not in self.index:
            return False
        from_cache = "source" in self.index.meta[item_id]  # an --index-cache item: would be added again
        if self.log:
            self.log.delete(item_id, tombstone=from_cache)
        if from_cache:
            self.removed.add(item_id)
        self.index.delete(item_id)
        self.upkeep.note_deleted([item_id])
        self.upkeep.start_if_due()  # the log has grown
        return True

    @one_at_a_time
    def search(self, query: np.ndarray, k: int, prefix: str | None = None, probe: int | None = None) -> list[dict]:
        return self.index.search(query, k, prefix, probe)

    async def search_queued(self, query: np.ndarray, k: int, prefix: str | None = None,
                            probe: int | None = None) -> list[dict]:
        """search(), as the ingress asks for it: searches that arrive while one is running are
        answered together by the next, in one pass over the matrix (search_together)."""
        return await self.queued_searches((query, k, prefix, probe))

    @one_at_a_time
    def search_together(self, requests: list[tuple[np.ndarray, int, str | None, int | None]]) -> list[list[dict]]:
        """(query, k, prefix, probe) searches -> each one's results, as search() gives them; those
        with the same prefix and probe are scored in one pass, at the largest k asked (each keeps
        its own k)."""
        answers: list[list[dict]] = [[] for _ in requests]
        alike: dict[tuple[str | None, int | None], list[int]] = {}
        for position, (_, _, prefix, probe) in enumerate(requests):
            alike.setdefault((prefix, probe), []).append(position)
        for (prefix, probe), positions in alike.items():
            k = max(requests[p][1] for p in positions)
            found = self.index.search_many([requests[p][0] for p in positions], k, prefix, probe)
            for position, results in zip(positions, found):
                answers[position] = results[: requests[position][1]]
        return answers
