"""A retrieval index shard's items on disk in binary, beside its log (ops/index_log.py): what
compacting the log writes, so that a restart reads the embeddings as they lie in memory instead of
parsing one JSON line and base64 string per item.

Replaying 100k items of 1536-d from JSON lines took ~4 s of a 2-core VM's restart (a third of it
base64), reading them from here a fraction of that (benchmarks/index_restart.py). The log stays
the write path: one short synced append per change, and a restart replays only the lines written
since the snapshot.

A snapshot is a directory `snapshot-<epoch>/`:
- `vectors.npy`: every item's embedding, float32 (N, D), in the index's block order (block after
  block, each block's live rows), read back through a memory map, so the only copy made is the
  index's own;
- `items.json`: the ids in that order, each block's row count, each item's meta in listing order
  (with its position among the rows), the tombstones, and the partition build the blocks are
  filed under (`generation`; block b is list b of it), or null for an exact index.

Written whole under a temporary name, synced, then renamed; it is only *used* once the log's first
line names its epoch (IndexLog.compact writes that line last, atomically), so a crash anywhere in
between leaves the previous snapshot and log in force and the new directory an orphan that the
next compaction removes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SNAPSHOT_PREFIX = "snapshot-"
VECTORS_NAME = "vectors.npy"
ITEMS_NAME = "items.json"


@dataclass(frozen=True)
class Snapshot:
    ids: list[str]  # row order (block after block)
    vectors: np.ndarray  # (N, D) float32, row order; a read-only memory map when loaded
    block_sizes: list[int]  # rows per block; sums to N
    listing: list[tuple[int, dict]]  # (row, meta) of each item, in listing (insertion) order
    removed: list[str]  # tombstones
    generation: str | None  # the partition build block b is list b of; None: blocks are not lists

    def labels(self) -> dict[str, int]:
        """id -> its block (its list under `generation`)."""
        blocks = np.repeat(np.arange(len(self.block_sizes)), self.block_sizes).tolist()
        return dict(zip(self.ids, blocks))


def snapshot_dir(store: str | Path, epoch: str) -> Path:
    return Path(store) / f"{SNAPSHOT_PREFIX}{epoch}"


def write_snapshot(store: str | Path, epoch: str, block_ids: list[list[str]], rows: Iterable[np.ndarray],
                   listing: list[tuple[int, dict]], removed: list[str], generation: str | None, width: int) -> Path:
    """block_ids: each block's ids, in row order. rows: their embeddings in that order, as chunks of
    rows written as they come (never stacked: a stack would hold a second copy of every embedding).
    -> the snapshot's directory, complete but not yet in force (the log names it when it is)."""
    final = snapshot_dir(store, epoch)
    staging = staging_dir(store, epoch)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    count = sum(len(ids) for ids in block_ids)
    written = 0
    with (staging / VECTORS_NAME).open("wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": (count, width)})
        for chunk in rows:
            out.write(np.ascontiguousarray(chunk, dtype="<f4").data)
            written += len(chunk)
        _sync(out)
    if written != count:
        raise ValueError(f"snapshot {epoch}: {written} rows written for {count} ids")
    record = {"ids": [item_id for ids in block_ids for item_id in ids], "blocks": [len(ids) for ids in block_ids],
              "listing": listing, "removed": removed, "generation": generation}
    with (staging / ITEMS_NAME).open("w", encoding="utf-8") as out:
        json.dump(record, out, separators=(",", ":"))
        _sync(out)
    os.replace(staging, final)
    sync_dir(final.parent)
    return final


def staging_dir(store: str | Path, epoch: str) -> Path:
    """Where a snapshot is written before it is complete."""
    final = snapshot_dir(store, epoch)
    return final.with_name(final.name + ".tmp")


def load_snapshot(store: str | Path, epoch: str, width: int) -> Snapshot:
    """ValueError, saying what is wrong, for a missing or damaged snapshot: the log names it, so
    the items it holds exist nowhere else, and serving without them would lose them silently."""
    directory = snapshot_dir(store, epoch)
    try:
        vectors = np.load(directory / VECTORS_NAME, mmap_mode="r")
        record = json.loads((directory / ITEMS_NAME).read_text(encoding="utf-8"))
        ids, sizes = list(record["ids"]), [int(n) for n in record["blocks"]]
        listing = [(int(row), meta) for row, meta in record["listing"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"index store {store}: its log names the snapshot {directory.name}, which cannot be "
                         f"read ({error}); the items it held are not in the log. Restore the directory "
                         "from a backup, or move the store aside to start an empty one") from error
    if vectors.ndim != 2 or vectors.dtype != np.float32 or len(vectors) != len(ids) != sum(sizes):
        raise ValueError(f"index store {store}: snapshot {directory.name} is inconsistent ({vectors.shape} "
                         f"{vectors.dtype} rows for {len(ids)} ids in blocks of {sum(sizes)})")
    if len(ids) and vectors.shape[1] != width:
        raise WrongWidth(f"{directory} holds embeddings of width {vectors.shape[1]}, this model's are {width}: "
                         "another model's index? give this model its own index store")
    return Snapshot(ids, vectors, sizes, listing, list(record.get("removed", [])), record.get("generation"))


def snapshot_width(store: str | Path, epoch: str) -> int | None:
    """The embedding width a snapshot holds (None: it holds no item)."""
    vectors = np.load(snapshot_dir(store, epoch) / VECTORS_NAME, mmap_mode="r")
    return int(vectors.shape[1]) if len(vectors) else None


def remove_snapshots(store: str | Path, keep: str | None = None) -> None:
    """Removes every snapshot directory but `keep`'s (older ones, and orphans of a crash)."""
    for path in Path(store).glob(f"{SNAPSHOT_PREFIX}*"):
        if path.is_dir() and path.name != f"{SNAPSHOT_PREFIX}{keep}":
            shutil.rmtree(path, ignore_errors=True)


class WrongWidth(ValueError):
    """The store belongs to a model of another embedding width."""


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def sync_dir(directory: Path) -> None:
    """Makes a rename in `directory` durable (POSIX: the entry lives in the directory's own data)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
