"""The retrieval index on disk: an append-only log of its changes and a binary snapshot of its items
in one directory, so a restarted index (a Serve replica that died, moved node, or was redeployed)
comes back with the items added over HTTP.

The log is the write path: one JSON line per change, appended and synced before the change is
answered (an add carries its embedding as base64 float32, 6 KB for a 1536-d embedding, where a
JSON list of floats takes ~4x that), so a change costs one short write whatever the index's size.
Compacting writes the live items as a snapshot (ops/index_snapshot.py: the embeddings as one
float32 array, ids and metas as JSON) and starts the log again with one line naming it, followed
by the lines appended while the snapshot was written (capture / write / commit: a serving shard
writes it in the background, pipelines/index_upkeep.py); a restart reads the snapshot and replays
only the lines after it. A compaction is due when the lines since the snapshot reach
1/COMPACT_SHARE of its size (or one is torn, or a new partition build is kept), so a restart reads
at most that much JSON, and a start that changed little rewrites nothing. A log of the first
format (lines only, no snapshot) is replayed whole and compacted into one at its first start. A
torn last line (the process killed mid-write) is skipped and counted, never fatal.

A partitioned shard (`--index-lists`) keeps its centroids beside the log
(ops/index_partition_file.py); the snapshot's blocks are its lists and each add line names its
list and the build that list belongs to, so a restart files every item where it was without
building the partition again. A build is followed by a compaction, whose snapshot's blocks are the
new lists.

A feature cache's items (`--index-cache`) are added again by every ingress at every start; one
deleted over HTTP leaves a tombstone, kept through compaction, so it stays deleted (until an
explicit add of the same id).

Single writer: each shard of the index is one replica (infra/serve_config.yaml), with a directory
of its own (ops/index_shards.py). The directory must be on a
volume the index's node sees after a restart (on a cluster: a shared volume).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ops.index_partition_file import SavedPartition, load_partition, remove_partition, save_partition
from ops.index_snapshot import (VECTORS_NAME, WrongWidth, load_snapshot, remove_snapshots, snapshot_dir,
                                staging_dir, sync_dir, write_snapshot)
from ops.kmeans import CHUNK_ROWS, nearest
from ops.store_lock import StoreLock
from ops.vector_index import VectorIndex

LOG_NAME = "index.jsonl"
MODEL_NAME = "model.json"  # beside the log: which model's predictions it holds
# Opening compacts once the log's lines since the snapshot reach 1/COMPACT_SHARE of the snapshot's
# bytes: a byte of lines replays ~7x slower than a byte of snapshot loads (benchmarks/index_restart.py),
# so a restart's replay stays under its load, and the whole-index write compacting costs comes once
# per that much change.
COMPACT_SHARE = 8
SNAPSHOT_OP = "snapshot"  # the log's first line after a compaction: {"op": "snapshot", "epoch": ...}


@dataclass(frozen=True)
class PendingSnapshot:
    """A snapshot captured from the index (IndexLog.capture) and not yet in force."""
    epoch: str
    block_ids: list[list[str]]  # each block's ids, in row order
    item_ids: list[str]  # in listing (insertion) order
    metas: list[dict]  # theirs, in that order (two lists: a list of pairs took 16x as long under the lock)
    removed: list[str]  # tombstones
    generation: str | None  # the partition build the blocks are the lists of
    width: int
    covers: int  # the log's size when captured: the lines after it are changes since


def prediction_fingerprint(model_dir: str | Path) -> str:
    """What an item's Ŝ_Y depends on, as one digest: the x-encoder's identity (frozen, so its id and
    config hash name it) and the trained weights after it, the predictor's and the heads' files.
    A retrained model of the same shape gets another digest, so a store of its predictions is not
    mixed with a new model's. Reads the predictor's weights (~2 GB for the paper preset, ~2 s)."""
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "vljepa.json").read_text())
    digest = hashlib.sha256(json.dumps([manifest.get("x_encoder_identity"), manifest["config"]],
                                       sort_keys=True).encode())
    for path in [model_dir / "heads.safetensors", *sorted((model_dir / "predictor").glob("*.safetensors"))]:
        with path.open("rb") as weights:
            while chunk := weights.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def encode_embedding(embedding: np.ndarray) -> str:
    return base64.b64encode(np.asarray(embedding, dtype="<f4").tobytes()).decode()


def decode_embedding(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class IndexLog:
    def __init__(self, directory: str | Path, model: str | None = None, lock_wait_s: float = 0.0,
                 waiting: Callable[[str], None] | None = None, exclusive: bool = True):
        """model: the prediction_fingerprint of the model serving; a store written by another model
        is refused (ValueError), a new store records it. None: not checked (tests of the log alone).
        exclusive: claim the directory for this process (ops/store_lock.py), waiting up to
        lock_wait_s for another process to give it up (StoreInUse after that; waiting(holder) told
        meanwhile); close() gives it up. False only for a directory nobody else can know of yet
        (a reshard's staging)."""
        self.path = Path(directory) / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = StoreLock(self.path.parent, lock_wait_s, waiting) if exclusive else None
        self.closed = False
        self.skipped = 0  # torn or unreadable lines met when opening
        self.removed: set[str] = set()  # the tombstones replay() read (see the module's docstring)
        self.saved: SavedPartition | None = None  # the kept partition replay() found
        self.unusable: str | None = None  # why a kept partition file could not be used, if one could not
        self.filed: dict[str, int] = {}  # replay(): id -> its list, for items filed under the kept partition's build
        self.generation: str | None = None  # the build the log's lines are filed under now
        self.epoch: str | None = None  # the snapshot the log's first line names (None: none, a log of lines only)
        self.snapshot_bytes = 0  # the size of that snapshot's embeddings
        self.snapshot_generation: str | None = None  # the partition build its blocks are the lists of
        self.change_bytes = 0  # replay(): the size of the lines after the snapshot's
        self.ends_cleanly = True  # replay(): whether the log's last line ends in a newline
        self.by_list: np.ndarray | None = None  # replay(): the kept centroids, while it fills the index list by list
        if model is not None:
            try:
                self.claim(model)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Gives the store up: nothing is written through this log after (a replica stopping)."""
        self.closed = True
        if self.lock is not None:
            self.lock.release()

    def _writable(self) -> None:
        if self.closed:
            raise RuntimeError(f"index store {self.path.parent} was given up (its replica is stopping): "
                               "nothing more is written through it")

    def claim(self, model: str) -> None:
        record = self.path.parent / MODEL_NAME
        if record.exists():
            recorded = json.loads(record.read_text()).get("prediction_fingerprint")
            if recorded != model:
                raise ValueError(f"index store {self.path.parent} holds the predictions of another model "
                                 f"(fingerprint {recorded}; this model's is {model}): they are not comparable "
                                 "with this model's. Give this model its own --index-store directory")
        elif self.path.exists() and self.path.stat().st_size:
            raise ValueError(f"index store {self.path.parent} has items but no {MODEL_NAME} naming their "
                             "model: give this model its own --index-store directory")
        else:
            record.write_text(json.dumps({"prediction_fingerprint": model}) + "\n")

    def open(self, width: int, lists: int = 0, probe: int = 1, announce=None, build_later: bool = False,
             compact_later: bool = False) -> VectorIndex:
        """The index as the store leaves it, partitioned by `lists` and `probe` (VectorIndex.partition;
        a kept partition of `lists` centroids is taken, not built again); then compacted into a new
        snapshot when the lines since the last one have grown past their share (compaction_due) or
        the log needs mending. compact_later: only mending is done here; a due compaction is the
        caller's, in the background (a Serve shard: pipelines/index_upkeep.py), so the replica
        answers sooner."""
        index = self.replay(width)
        index.build_later = build_later  # VectorIndex.build_later: a build due is left to the caller
        index.partition(lists, probe, announce, saved=self.saved, filed=self.filed)
        self.keep(index, compact=self.needs_mending() or (not compact_later and self.compaction_due(index)),
                  compact_later=compact_later)
        self.filed = {}
        return index

    def needs_mending(self) -> bool:
        """Whether the log must be rewritten before anything is appended: a torn or unreadable
        line, or a last line without its newline (which the next append would join)."""
        return bool(self.skipped) or not self.ends_cleanly

    def compaction_due(self, index: VectorIndex, least_change_bytes: int = 0) -> bool:
        """Whether the log's lines since the snapshot have reached 1/COMPACT_SHARE of its size (with
        no snapshot: any line at all, a log of the first format's included), or the snapshot's
        blocks are not the index's lists (a new build kept; or a crash between keeping a build's
        centroids and writing its snapshot: every start would score every item again). Otherwise
        nothing is rewritten: rewriting 61 GB of a 10M-item shard because one item was added since
        would make every restart cost a full write. least_change_bytes: and the lines at least this
        long (a serving shard's floor: a small store is not rewritten at every add)."""
        if self.snapshot_generation != index.generation and (self.epoch is not None or self.change_bytes > 0):
            return True  # with no snapshot yet: the lines' items were added before the build
        return (self.change_bytes > 0 and self.change_bytes >= least_change_bytes
                and self.change_bytes * COMPACT_SHARE >= self.snapshot_bytes)

    def replay(self, width: int) -> VectorIndex:
        """The index as the store leaves it: the snapshot the log names, then the log's lines (exact;
        `filed` and `saved` say how it was partitioned). ValueError when the store holds embeddings
        of another width (another model's index, which this one could neither search nor extend) or
        names a snapshot it cannot read."""
        index = VectorIndex(width)
        self.filed, self.removed = {}, set()
        self.saved, self.unusable = load_partition(self.path.parent, width)
        self.generation = self.saved.generation if self.saved else None
        self.epoch, self.snapshot_bytes, self.change_bytes, self.ends_cleanly = None, 0, 0, True
        self.snapshot_generation, self.by_list = None, None
        if not self.path.exists():
            return index
        with self.path.open(encoding="utf-8") as log:
            for number, line in enumerate(log):
                self.ends_cleanly = line.endswith("\n")
                if number == 0 and self._read_snapshot(line, index, width):
                    continue
                self.change_bytes += len(line)
                try:
                    self._apply(json.loads(line), index, width)
                except WrongWidth:
                    raise
                except (ValueError, KeyError, TypeError):
                    self.skipped += 1
        return index

    def _read_snapshot(self, line: str, index: VectorIndex, width: int) -> bool:
        """The log's first line: when it names a snapshot, the index is filled from it. -> whether it did."""
        try:
            header = json.loads(line)
            epoch = header["epoch"] if header.get("op") == SNAPSHOT_OP else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return False
        if epoch is None:
            return False
        snapshot = load_snapshot(self.path.parent, epoch, width)
        by_list = (self.saved is not None and snapshot.generation == self.saved.generation
                   and len(snapshot.block_sizes) == self.saved.lists)
        # filled list by list when the blocks are the kept partition's lists: the replay's adds then
        # go to their lists too, and partition() takes the blocks as they are
        index.fill(snapshot.ids, snapshot.vectors, snapshot.listing, snapshot.block_sizes if by_list else None)
        self.by_list = self.saved.centroids if by_list else None
        self.removed = set(snapshot.removed)
        if by_list:
            self.filed = snapshot.labels()
        self.epoch, self.snapshot_bytes = epoch, int(snapshot.vectors.nbytes)
        self.snapshot_generation = snapshot.generation
        return True

    def _apply(self, change: dict, index: VectorIndex, width: int) -> None:
        if change["op"] == "add":
            embedding = decode_embedding(change["embedding"])
            if embedding.shape[0] != width:
                raise WrongWidth(f"{self.path} holds embeddings of width {embedding.shape[0]}, "
                                 f"this model's are {width}: another model's index? "
                                 "give this model its own index store")
            target = None
            if self.generation is not None and change.get("build") == self.generation:
                self.filed[change["id"]] = target = int(change["list"])
            else:
                self.filed.pop(change["id"], None)  # replaced since: its list is unknown
            if self.by_list is not None and not (target is not None and 0 <= target < len(self.by_list)):
                target = int(nearest(embedding[None], self.by_list)[0])  # scored as partition() would
            index.add(change["id"], embedding, change["meta"], target if self.by_list is not None else None)
            self.removed.discard(change["id"])
        elif change["op"] == "delete":
            index.delete(change["id"])
            self.filed.pop(change["id"], None)
            if change.get("tombstone"):
                self.removed.add(change["id"])
        else:
            raise ValueError(f"unknown change {change['op']!r}")

    def keep(self, index: VectorIndex, compact: bool = False, compact_later: bool = False) -> None:
        """After a change that may have built the index's partition: keeps its centroids and, unless
        compact_later, compacts, so the snapshot's blocks are the new lists (nothing to do while the
        build is the one kept; compaction_due says when one is left to do). compact: compact anyway."""
        if index.generation != self.generation:
            self._writable()
            # first: lines appended from now on name the index's lists, whose build is this one even
            # if saving its centroids fails (a full disk); a restart then scores them, never files
            # them under the kept file's other lists
            self.generation = index.generation
            if index.generation is None:
                remove_partition(self.path.parent)
            else:
                save_partition(self.path.parent, SavedPartition(index.generation, index.centroids, index.built_at))
            compact = compact or not compact_later
        if compact:
            self.compact(index)

    def compact(self, index: VectorIndex) -> None:
        """Writes the index's live items and the tombstones as a new snapshot, then starts the log
        again with one line naming it, all at once (nothing else may change the index meanwhile:
        a start, a reshard; a serving shard compacts in the background, capture/write/commit)."""
        pending = self.capture(index)
        self.write(pending, index.rows_of)
        self.commit(pending)
        self.remove_old_snapshots()

    def remove_old_snapshots(self) -> None:
        """Removes the snapshots the log no longer names (the one before a commit, orphans of a crash);
        after the commit, and outside a serving shard's lock (a large file takes a while to free)."""
        remove_snapshots(self.path.parent, keep=self.epoch)

    def capture(self, index: VectorIndex) -> PendingSnapshot:
        """What a snapshot of the index as it is now holds, but its embeddings (with the index held
        still: the caller's lock): each list's ids, the metas, the tombstones, and how much of the
        log they cover. Copies references, not embeddings: 0.05 s per million items on the dev VM."""
        return PendingSnapshot(epoch=secrets.token_hex(4), block_ids=[list(block.ids) for block in index.blocks],
                               item_ids=list(index.meta), metas=list(index.meta.values()),
                               removed=sorted(self.removed),
                               generation=index.generation, width=index.width,
                               covers=self.path.stat().st_size if self.path.exists() else 0)

    def write(self, pending: PendingSnapshot, rows_of: Callable[[list[str]], tuple[list[str], np.ndarray]]) -> None:
        """Writes the captured snapshot's directory (not yet in force), reading the embeddings a
        chunk at a time through rows_of (VectorIndex.rows_of; a serving shard's takes its lock per
        chunk, so the index changes between chunks). An item replaced since the capture is written
        with its new embedding, one deleted since as zeros: either way its change is a line after
        `covers`, which the committed log keeps and a restart replays over the snapshot."""
        order = [item_id for ids in pending.block_ids for item_id in ids]
        row = {item_id: number for number, item_id in enumerate(order)}
        listing = [(row[item_id], meta) for item_id, meta in zip(pending.item_ids, pending.metas)]

        def chunks():
            for start in range(0, len(order), CHUNK_ROWS):
                wanted = order[start:start + CHUNK_ROWS]
                held, rows = rows_of(wanted)
                if len(held) == len(wanted):
                    yield rows
                    continue
                filled = np.zeros((len(wanted), pending.width), dtype=np.float32)  # deleted since the capture
                filled[[row[item_id] - start for item_id in held]] = rows
                yield filled

        write_snapshot(self.path.parent, pending.epoch, pending.block_ids, chunks(), listing, pending.removed,
                       pending.generation, pending.width)

    def commit(self, pending: PendingSnapshot) -> None:
        """Puts a written snapshot in force (with the index held still): the log becomes one line
        naming it plus the lines appended since the capture. The log's rename is the commit: a crash
        before it leaves the old snapshot and log in force (the new directory an orphan, removed by
        the next compaction), one after it the new ones. The old snapshot stays on disk until
        remove_old_snapshots."""
        self._writable()
        tail = b""
        if self.path.exists():
            with self.path.open("rb") as log:
                log.seek(pending.covers)
                tail = log.read()
        staging = self.path.with_suffix(".jsonl.tmp")
        with staging.open("wb") as out:
            out.write((json.dumps({"op": SNAPSHOT_OP, "epoch": pending.epoch}) + "\n").encode())
            out.write(tail)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, self.path)
        sync_dir(self.path.parent)
        self.epoch, self.change_bytes, self.snapshot_generation = pending.epoch, len(tail), pending.generation
        self.snapshot_bytes = (snapshot_dir(self.path.parent, pending.epoch) / VECTORS_NAME).stat().st_size
        self.ends_cleanly = True

    def abandon(self, pending: PendingSnapshot) -> None:
        """Removes what a snapshot that will not be committed left on disk (a failed write)."""
        shutil.rmtree(staging_dir(self.path.parent, pending.epoch), ignore_errors=True)
        shutil.rmtree(snapshot_dir(self.path.parent, pending.epoch), ignore_errors=True)

    def add(self, item_id: str, embedding: np.ndarray, meta: dict, target: int | None = None) -> None:
        """target: the list of the index's current build it is filed under (None: the index is exact)."""
        # supersedes a tombstone on replay
        self._append(self._add_line(item_id, embedding, meta, self._filing(self.generation, target)))

    def add_many(self, items: list[tuple[str, np.ndarray, dict]], targets: np.ndarray | None = None) -> None:
        """One write and one sync for all of them (a cache's thousands of items at start-up).
        targets: their lists under the index's current build (None: the index is exact)."""
        if items:
            listed = [None] * len(items) if targets is None else np.asarray(targets).tolist()
            self._append("".join(self._add_line(*item, self._filing(self.generation, target))
                                 for item, target in zip(items, listed)))

    def delete(self, item_id: str, tombstone: bool = False) -> None:
        """tombstone: the id stays deleted through compaction (a cache's item, which would be added again)."""
        self._append(self._delete_line(item_id, tombstone))

    def delete_many(self, item_ids: list[str]) -> None:
        """One write and one sync (a cache's items dropped at start-up), no tombstones."""
        if item_ids:
            self._append("".join(self._delete_line(item_id, tombstone=False) for item_id in item_ids))

    @staticmethod
    def _delete_line(item_id: str, tombstone: bool) -> str:
        return json.dumps({"op": "delete", "id": item_id, **({"tombstone": True} if tombstone else {})}) + "\n"

    @staticmethod
    def _filing(generation: str | None, target: int | None) -> dict:
        return {} if generation is None or target is None else {"build": generation, "list": int(target)}

    @staticmethod
    def _add_line(item_id: str, embedding: np.ndarray, meta: dict, filing: dict | None = None) -> str:
        return json.dumps({"op": "add", "id": item_id, "meta": meta, **(filing or {}),
                           "embedding": encode_embedding(embedding)}) + "\n"

    def _append(self, line: str) -> None:
        self._writable()
        # flushed and synced before the change is acknowledged: an answered add survives a crash
        with self.path.open("a", encoding="utf-8") as log:
            log.write(line)
            log.flush()
            os.fsync(log.fileno())
        self.change_bytes += len(line)  # json.dumps writes ASCII: characters are bytes
