"""What an index store holds, read the way a restart reads it (the snapshot the log names, then the
log's lines), for tests that check what was written, not only what a replica answers."""

from __future__ import annotations

import json
from pathlib import Path

from ops.index_log import LOG_NAME, SNAPSHOT_OP
from ops.index_snapshot import SNAPSHOT_PREFIX, load_snapshot


def log_lines(store) -> list[dict]:
    return [json.loads(line) for line in (Path(store) / LOG_NAME).read_text().splitlines()]


def changes(store) -> list[dict]:
    """The log's lines after its snapshot line."""
    return [line for line in log_lines(store) if line["op"] != SNAPSHOT_OP]


def snapshot_epoch(store) -> str | None:
    lines = log_lines(store)
    return lines[0]["epoch"] if lines and lines[0]["op"] == SNAPSHOT_OP else None


def snapshots(store) -> list[str]:
    return sorted(p.name for p in Path(store).glob(f"{SNAPSHOT_PREFIX}*"))


def filing(store, width: int) -> dict[str, tuple[str | None, int | None]]:
    """id -> (build, list) each live item is filed under on disk: the snapshot's blocks under its
    generation, then each add line's own label (or none)."""
    filed: dict[str, tuple[str | None, int | None]] = {}
    epoch = snapshot_epoch(store)
    if epoch is not None:
        snapshot = load_snapshot(store, epoch, width)
        filed = {item_id: (snapshot.generation, block if snapshot.generation else None)
                 for item_id, block in snapshot.labels().items()}
    for change in changes(store):
        if change["op"] == "add":
            filed[change["id"]] = (change.get("build"), change.get("list"))
        else:
            filed.pop(change["id"], None)
    return filed


def tombstones(store, width: int) -> set[str]:
    epoch = snapshot_epoch(store)
    removed = set(load_snapshot(store, epoch, width).removed) if epoch else set()
    for change in changes(store):
        if change["op"] == "add":
            removed.discard(change["id"])
        elif change.get("tombstone"):
            removed.add(change["id"])
    return removed
