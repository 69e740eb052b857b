"""A retrieval index shard's upkeep, done in a thread while the shard keeps answering: building its
partition, and compacting its store.

Built inside the add that made it due (as at first), a build held the shard's lock from start to
end: k-means on a sample, then every item scored against every centroid. 31 s for 100k items of
1536-d under 1024 lists on 2 cores (benchmarks/index_restart.py), tens of minutes for millions, and
every search, list and add of the shard waited behind it: a retrieval endpoint gone quiet on a
schedule nobody chose. Here the lock is held only to copy what the build reads: the k-means
sample, then the items' rows a chunk at a time, twice (once to score them, once to file them in
the new lists, ops/pending_lists.py, which are filled outside it); and at the end to put right
the items changed since they were read and swap the lists in. Searches meanwhile use the index
as it was (exact, or the previous lists). Items added or replaced while a build runs are noted
(`changed`) and filed from their current rows at the end; those deleted (`deleted`) are dropped.

Compacting the store (ops/index_log.py: a snapshot of every item, then the log started again)
writes the whole shard, a minute for 10M items of 1536-d; done with the lock held (after each
build, as at first) the shard stopped answering for that long. Here the lock is held to capture
the ids and metas, for each chunk's rows, and to put the snapshot in force at the end; the
changes made meanwhile are the log's lines after the capture, kept in the new log. A compaction
is due once the lines since the last snapshot reach its share, or a new build's lists are kept.

One job at a time, builds first. One that fails is reported and the index and store stay as they
were; the same kind of job is tried again at the first change RETRY_AFTER_S after (a build that
failed on the same items fails again; a disk that was full may have room by then).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from ops.index_log import IndexLog, PendingSnapshot
from ops.kmeans import BESIDE_SEARCHES_ROWS, CHUNK_ROWS, nearest, spherical_kmeans
from ops.pending_lists import PendingLists
from ops.vector_index import VectorIndex
from pipelines.replica_notice import notice

RETRY_AFTER_S = 300.0
# While a shard serves, a compaction also waits for this much of the log's lines since its snapshot,
# which a restart replays in ~0.1 s: without it a small store was rewritten whole at nearly every add
# (its snapshot a few lines long). A start compacts by the share alone.
COMPACT_WHILE_SERVING_BYTES = 4 << 20
BUILD, COMPACTION = "build", "compaction"


class ShardUpkeep:
    def __init__(self, lock: threading.Lock, index: VectorIndex, log: IndexLog | None,
                 built: Callable[[int, float], None], finished: Callable[[str, bool, float], None] | None = None):
        """lock: the shard's, held by every request. log: its store (None: memory only, nothing to
        compact). built(scored, seconds): told, with the lock held, once a build's lists are taken
        (to keep the centroids in the store and say so). finished(kind, done, seconds): told after
        each job, done or failed, the lock not held (the shard's metrics)."""
        self.lock, self.index, self.log, self.built, self.finished = lock, index, log, built, finished
        self.thread: threading.Thread | None = None
        self.changed: set[str] = set()  # ids added or replaced since the running build began
        self.deleted: set[str] = set()  # ids deleted since it began
        self.failed_at: dict[str, float] = {}  # job kind -> time.monotonic() of its last failure
        self.taken_at: float | None = None  # time.perf_counter() when the last build's lists were taken
        self.compactions = 0  # compactions committed by this shard
        self.compacted_at: float | None = None  # time.perf_counter() when the last one was committed
        self.closed = False  # close(): no job starts, and a running one puts nothing in force

    def note(self, item_ids: Iterable[str]) -> None:
        """Ids just added or replaced (lock held): a running build's rows of them are stale."""
        if self.thread is not None:
            self.changed.update(item_ids)

    def note_deleted(self, item_ids: Iterable[str]) -> None:
        """Ids just deleted (lock held): a running build may have filed them already."""
        if self.thread is not None:
            self.deleted.update(item_ids)

    def start_if_due(self, least_change_bytes: int | None = None) -> bool:
        """Starts a job when one is due and none runs (lock held); least_change_bytes: the floor on
        a compaction's lines (IndexLog.compaction_due; 0 at a start, COMPACT_WHILE_SERVING_BYTES by
        default). -> whether it started one."""
        if self.thread is not None or self.closed:
            return False
        if least_change_bytes is None:
            least_change_bytes = COMPACT_WHILE_SERVING_BYTES
        if self._may(BUILD) and self.index.build_due():
            self.changed, self.deleted = set(), set()
            job = (BUILD, (self.index.build_sample(), list(self.index.meta), len(self.index)))
        elif self.log is not None and self._may(COMPACTION) and self.log.compaction_due(self.index, least_change_bytes):
            job = (COMPACTION, (self.log.capture(self.index),))
        else:
            return False
        thread = threading.Thread(target=self._run, args=job, daemon=True, name=f"retrieval-index-{job[0]}")
        # started before it is published: wait() reads self.thread without the lock, and joining a
        # thread not yet started raises (it did, now and then, on a loaded machine). The job cannot
        # clear self.thread before this returns: it takes the lock, which the caller holds
        thread.start()
        self.thread = thread
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for running jobs (and those started by the end of another). -> whether none runs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (thread := self.thread) is not None:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        return True

    def close(self, wait_s: float) -> bool:
        """The shard is stopping: starts no more jobs and waits up to wait_s for a running one; one
        still running after that is given up before it puts anything in force (its lists or its
        snapshot), so the store is left as it is for whoever opens it next. -> whether none runs."""
        with self.lock:
            self.closed = True
        if self.thread is threading.current_thread():
            return False
        return self.wait(wait_s)

    def _given_up_if_closed(self) -> None:
        """With the lock held, before a job puts its result in force."""
        if self.closed:
            raise JobGivenUp("the shard is stopping")

    def _may(self, kind: str) -> bool:
        failed = self.failed_at.get(kind)
        return failed is None or time.monotonic() - failed >= RETRY_AFTER_S

    def _run(self, kind: str, args: tuple) -> None:
        started, done = time.perf_counter(), False
        try:
            (self._build if kind == BUILD else self._compact)(*args)
            self.failed_at.pop(kind, None)
            done = True
        except Exception as error:  # noqa: BLE001 - reported; the shard serves on with what it has
            if kind == COMPACTION:
                self.log.abandon(args[0])
            if isinstance(error, JobGivenUp):
                notice(logging.INFO, "retrieval index: a %s given up: the shard is stopping", kind)
                return
            self.failed_at[kind] = time.monotonic()
            what = ("building its partition failed ({}); searches stay as they were" if kind == BUILD else
                    "compacting its store failed ({}); the log still holds every change, a restart replays more of it")
            notice(logging.ERROR, "retrieval index: %s; tried again at the first change %.0f s from now",
                   what.format(f"{type(error).__name__}: {error}"), RETRY_AFTER_S)
        finally:
            try:
                if self.finished is not None and not self.closed:
                    self.finished(kind, done, time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - a metric not recorded must not leave the job "running"
                logging.getLogger(__name__).exception("retrieval index: recording a %s's metrics failed", kind)
            with self.lock:
                self.thread = None
                self.start_if_due()  # the index may have grown past the next build's size meanwhile

    def _build(self, sample, item_ids: list[str], count: int) -> None:
        started = time.perf_counter()
        centroids = spherical_kmeans(sample, self.index.lists, chunk_rows=BESIDE_SEARCHES_ROWS)
        del sample
        buffer = touched_buffer(min(CHUNK_ROWS, len(item_ids)), self.index.width)
        labels: dict[str, int] = {}
        for held, rows in self._chunks(item_ids, buffer):  # each item's list, scored outside the lock
            labels.update(zip(held, nearest(rows, centroids, BESIDE_SEARCHES_ROWS).tolist()))
        # the lists, each allocated once at its size, filled outside the lock from a second read
        pending = PendingLists(centroids, np.bincount(np.fromiter(labels.values(), np.int64, len(labels)),
                                                      minlength=len(centroids)))
        for held, rows in self._chunks(item_ids, buffer):
            pending.file(held, rows, np.fromiter((labels[item_id] for item_id in held), np.int64, len(held)))
        del labels
        with self.lock:  # only the items changed since they were read are put right here
            self._given_up_if_closed()
            for item_id in self.changed | self.deleted:
                pending.drop(item_id)
            held, rows = self.index.rows_of([item_id for item_id in self.changed if item_id in self.index])
            pending.put(held, rows)
            replaced = self.index.take_lists(pending, count)
            self.taken_at = time.perf_counter()
            self.built(len(held), time.perf_counter() - started)
        del replaced  # the old lists freed outside the lock

    def _chunks(self, item_ids: list[str], buffer: np.ndarray):
        """(ids held, their rows) a chunk at a time, copied under the lock into `buffer` (each chunk
        used before the next), leaving out items changed since the build began."""
        for start in range(0, len(item_ids), CHUNK_ROWS):
            with self.lock:
                chunk = self.index.rows_of([item_id for item_id in item_ids[start:start + CHUNK_ROWS]
                                            if item_id not in self.changed], buffer)
            yield chunk  # outside the lock: a yield inside it would hold it while the caller works

    def _compact(self, pending: PendingSnapshot) -> None:
        started = time.perf_counter()
        count = sum(len(ids) for ids in pending.block_ids)
        buffer = touched_buffer(min(CHUNK_ROWS, count), self.index.width)  # each chunk written before the next
        self.log.write(pending, functools.partial(self._rows_of, out=buffer))
        with self.lock:
            self._given_up_if_closed()
            self.log.commit(pending)
            self.compactions += 1
            self.compacted_at = time.perf_counter()
        self.log.remove_old_snapshots()
        notice(logging.INFO, "retrieval index: store compacted, %d items in a snapshot in %.1f s (the shard "
               "kept answering; %d bytes of changes since kept in the log)", len(pending.item_ids),
               time.perf_counter() - started, self.log.change_bytes)

    def _rows_of(self, item_ids: list[str], out: np.ndarray | None = None):
        with self.lock:  # a chunk's rows copied under the lock, written outside it
            return self.index.rows_of(item_ids, out)


class JobGivenUp(Exception):
    """A job stopped before putting its result in force: its shard is stopping (ShardUpkeep.close)."""


def touched_buffer(rows: int, width: int) -> np.ndarray:
    """A buffer for the chunks a job copies under the lock, its pages faulted in outside it."""
    buffer = np.empty((max(rows, 1), width), dtype=np.float32)
    buffer.fill(0.0)
    return buffer
