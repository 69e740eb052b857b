"""Re-split a kept retrieval index store for another shard count (`vljepa index-reshard`).

An item's shard is its id's hash modulo the shard count (ops/index_shards.py), so a store written
for M shards cannot be served with N: `vljepa serve` refuses it. This rewrites it offline: every
shard's log replayed (live items and the tombstones of deleted cache items), each item and
tombstone written to the shard its id hashes to under N, in the order the old listing gave them,
beside the model record. The new layout is written complete in a staging directory inside the
store first; only then do the old parts move aside, the new ones into place, and the old ones go.
The index must not be served while this runs (a replica appending to the old logs would lose
those writes): it holds the store's locks (ops/store_lock.py) and is refused while a server does.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from ops.index_log import LOG_NAME, MODEL_NAME, SNAPSHOT_OP, IndexLog, decode_embedding
from ops.index_partition_file import PARTITION_NAME
from ops.index_snapshot import SNAPSHOT_PREFIX, snapshot_width
from ops.index_shards import shard_dir_name, shard_of, shard_store, store_layout
from ops.store_lock import StoreLock
from ops.vector_index import VectorIndex

STAGING = ".reshard-new"
RETIRED = ".reshard-old"


def log_width(directory: Path) -> int | None:
    """The embedding width of a shard's store: its snapshot's, or its log's first add's; None for a
    store without an item."""
    path = directory / LOG_NAME
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as log:
        for line in log:
            try:
                change = json.loads(line)
                if change["op"] == SNAPSHOT_OP:
                    width = snapshot_width(directory, change["epoch"])
                    if width is not None:
                        return width
                elif change["op"] == "add":
                    return int(decode_embedding(change["embedding"]).shape[0])
            except (ValueError, KeyError, TypeError, OSError):
                continue  # a torn line: replay skips it too (an unreadable snapshot: replay says so)
    return None


def recorded_model(directories: list[Path]) -> str | None:
    """The prediction fingerprint the shards' model records name; ValueError when they disagree."""
    names = {json.loads((d / MODEL_NAME).read_text()).get("prediction_fingerprint")
             for d in directories if (d / MODEL_NAME).exists()}
    if len(names) > 1:
        raise ValueError(f"the store's shards record different models ({', '.join(sorted(map(str, names)))}): "
                         "they cannot be one index")
    return names.pop() if names else None


def reshard_store(store: str | Path, shards: int) -> dict:
    """Rewrite `store` for `shards` shards (nothing to do when it has that many already). -> {"from":
    old count, "to": shards, "items": per new shard, "tombstones": how many, "skipped": unreadable
    lines of the old logs (a write cut short), dropped}. ValueError for a store holding no index;
    StoreInUse while a server holds it (its root, or any shard's directory: ops/store_lock.py)."""
    store = Path(store)
    if (store / RETIRED).exists():
        raise ValueError(f"index store {store}: a reshard was cut short while swapping layouts: {RETIRED}/ holds "
                         f"the old layout's parts and {STAGING}/ the new one's; move one set back into {store} "
                         "and remove both directories")
    old = store_layout(store)
    if old is None:
        raise ValueError(f"index store {store} holds no index (no {LOG_NAME}, no shard directories)")
    with contextlib.ExitStack() as claims:
        claims.enter_context(StoreLock(store))  # the layout: no server starts on it meanwhile
        sources = [shard_store(store, shard, old) for shard in range(old)]
        logs = [IndexLog(source) for source in sources]  # each shard's: refused while a replica holds one
        for log in logs:
            claims.callback(log.close)
        return _reshard(store, old, shards, sources, logs)


def _reshard(store: Path, old: int, shards: int, sources: list[Path], logs: list[IndexLog]) -> dict:
    widths = {w for w in map(log_width, sources) if w is not None}
    if len(widths) > 1:
        raise ValueError(f"index store {store}: its shards hold embeddings of widths {sorted(widths)}")
    width = widths.pop() if widths else 1  # no item, only deletions: any width replays them
    model = recorded_model(sources)
    if old == shards:
        return {"from": old, "to": shards, "items": [len(log.replay(width)) for log in logs],
                "tombstones": None, "skipped": 0}

    split = [VectorIndex(width) for _ in range(shards)]
    tombstones: list[set[str]] = [set() for _ in range(shards)]
    skipped = 0
    for log in logs:
        for item_id, embedding, meta in log.replay(width).items():  # shard by shard, as the listing goes
            split[shard_of(item_id, shards)].add(item_id, embedding, meta)
        for item_id in log.removed:
            tombstones[shard_of(item_id, shards)].add(item_id)
        skipped += log.skipped

    staging = store / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # a run cut short before the swap left it
    for shard in range(shards):
        target = staging if shards == 1 else staging / shard_dir_name(shard, shards)
        log = IndexLog(target, model, exclusive=False)  # no one else knows of staging/; the store's lock covers it
        log.removed = tombstones[shard]
        log.compact(split[shard])

    retired = store / RETIRED
    shutil.rmtree(retired, ignore_errors=True)
    retired.mkdir()
    for part in old_parts(store, old):
        part.rename(retired / part.name)
    for part in staging.iterdir():
        part.rename(store / part.name)
    shutil.rmtree(retired)
    staging.rmdir()
    return {"from": old, "to": shards, "items": [len(index) for index in split],
            "tombstones": sum(map(len, tombstones)), "skipped": skipped}


def old_parts(store: Path, shards: int) -> list[Path]:
    """What the layout of `shards` shards keeps in `store`: the log, snapshots, model record and kept
    partition of an unsplit index, or the shard directories. (A new shard's partition is built by
    its replica: the old centroids were learnt from other items.)"""
    if shards == 1:
        return ([store / name for name in (LOG_NAME, MODEL_NAME, PARTITION_NAME) if (store / name).exists()]
                + sorted(store.glob(f"{SNAPSHOT_PREFIX}*")))
    return [store / shard_dir_name(shard, shards) for shard in range(shards)
            if (store / shard_dir_name(shard, shards)).exists()]
