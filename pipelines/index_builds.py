"""A retrieval index shard's partition built in a thread while the shard keeps answering.

Built inside the add that made it due (as at first), a build held the shard's lock from start to
end: k-means on a sample, then every item scored against every centroid. 31 s for 100k items of
1536-d under 1024 lists on 2 cores (benchmarks/index_restart.py), tens of minutes for millions, and
every search, list and add of the shard waited behind it: a retrieval endpoint gone quiet on a
schedule nobody chose. Here the lock is held only to copy what the build reads (the k-means
sample; then the items' rows a chunk at a time) and, at the end, to file the items under the new
lists; searches meanwhile use the index as it was (exact, or the previous lists).

Items added or replaced while a build runs are noted (`changed`) and scored against the new
centroids when they are taken; deleted ones are simply absent by then. Only one build runs at a
time; one that fails is reported and the index stays as it was, without another try until the
replica restarts (a build that fails once, on the same items, fails again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from ops.kmeans import CHUNK_ROWS, nearest, spherical_kmeans
from ops.vector_index import VectorIndex
from pipelines.replica_notice import notice


class BackgroundBuilds:
    def __init__(self, lock: threading.Lock, index: VectorIndex, built: Callable[[int, float], None]):
        """lock: the shard's, held by every request. built(scored, seconds): told, with the lock
        held, once a build's lists are taken (to keep them in the store and say so)."""
        self.lock, self.index, self.built = lock, index, built
        self.thread: threading.Thread | None = None
        self.changed: set[str] = set()  # ids added or replaced since the running build began
        self.failed: str | None = None
        self.taken_at: float | None = None  # time.perf_counter() when the last build's lists were taken

    def note(self, item_ids: Iterable[str]) -> None:
        """Ids just added or replaced (lock held): a running build's labels for them are stale."""
        if self.thread is not None:
            self.changed.update(item_ids)

    def start_if_due(self) -> bool:
        """Starts a build when one is due and none runs (lock held). -> whether it started one."""
        if self.thread is not None or self.failed is not None or not self.index.build_due():
            return False
        self.changed = set()
        sample, item_ids, count = self.index.build_sample(), list(self.index.meta), len(self.index)
        self.thread = threading.Thread(target=self._run, args=(sample, item_ids, count), daemon=True,
                                       name="retrieval-index-build")
        self.thread.start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for running builds (and one started by the end of another). -> whether none runs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (thread := self.thread) is not None:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        return True

    def _run(self, sample, item_ids: list[str], count: int) -> None:
        started = time.perf_counter()
        try:
            centroids = spherical_kmeans(sample, self.index.lists)
            del sample
            labels: dict[str, int] = {}
            for start in range(0, len(item_ids), CHUNK_ROWS):
                with self.lock:  # a chunk's rows copied under the lock, scored outside it
                    held, rows = self.index.rows_of([item_id for item_id in item_ids[start:start + CHUNK_ROWS]
                                                     if item_id not in self.changed])
                labels.update(zip(held, nearest(rows, centroids).tolist()))
            with self.lock:
                for item_id in self.changed:
                    labels.pop(item_id, None)
                scored = self.index.adopt(centroids, labels, count)
                self.taken_at = time.perf_counter()
                self.built(scored, time.perf_counter() - started)
                self.thread = None
                self.start_if_due()  # the index may have grown past the next build's size meanwhile
        except Exception as error:  # noqa: BLE001 - reported; the shard serves on with what it has
            with self.lock:
                self.failed = f"{type(error).__name__}: {error}"
                self.thread = None
            notice(logging.ERROR, "retrieval index: building its partition failed (%s); searches stay as "
                   "they were until the replica restarts", self.failed)
