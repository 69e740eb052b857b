"""A partitioned index shard's centroids on disk, beside its log (ops/index_log.py), so that a
restarted replica files its items under the lists it had instead of building them again.

A build is k-means on a sample and then one pass scoring every item against every centroid; at 10M
items of 1536-d under 4096 lists that pass alone is ~6e13 multiply-adds, tens of minutes on a few
cores, paid at every start when only the embeddings were kept. Kept here: the centroids, how many
items they were built over (the rebuild-at-growth rule counts from it) and a generation, a random
name per build. The store's snapshot (ops/index_snapshot.py) records the generation its blocks
are the lists of, and each add line of the log the generation and the list its item was filed
under; on replay an item filed under this file's generation goes straight into that list, and any
other (a line written before this build, a crash between writing this file and writing the
snapshot of the new lists) is scored against the centroids, so a stale or missing label costs
time, never a wrong list.

One .npz, written to a temporary name, synced, then renamed over the old one: a reader sees the
old centroids or the new ones, never half of either.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARTITION_NAME = "partition.npz"


@dataclass(frozen=True)
class SavedPartition:
    generation: str  # names this build; the log's add lines name the build they were filed under
    centroids: np.ndarray  # (lists, width) float32, unit rows
    built_at: int  # items the centroids were built over

    @property
    def lists(self) -> int:
        return len(self.centroids)


def save_partition(directory: str | Path, partition: SavedPartition) -> None:
    path = Path(directory) / PARTITION_NAME
    staging = path.with_name(PARTITION_NAME + ".tmp")
    with staging.open("wb") as out:
        np.savez(out, centroids=np.asarray(partition.centroids, dtype=np.float32),
                 generation=np.array(partition.generation), built_at=np.array(partition.built_at, dtype=np.int64))
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, path)


def load_partition(directory: str | Path, width: int) -> tuple[SavedPartition | None, str | None]:
    """-> (the saved partition, None), or (None, why it cannot be used) for an unreadable file or one
    of another width; (None, None) when there is none."""
    path = Path(directory) / PARTITION_NAME
    if not path.exists():
        return None, None
    try:
        with np.load(path, allow_pickle=False) as saved:
            centroids = saved["centroids"].astype(np.float32)
            partition = SavedPartition(str(saved["generation"]), centroids, int(saved["built_at"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        return None, f"{path} is unreadable ({error}); the partition is built again"
    if centroids.ndim != 2 or centroids.shape[1] != width or not len(centroids):
        return None, f"{path} holds centroids of shape {centroids.shape}, not (lists, {width}); built again"
    return partition, None


def remove_partition(directory: str | Path) -> None:
    (Path(directory) / PARTITION_NAME).unlink(missing_ok=True)
