"""The retrieval index split over several replicas (`vljepa serve --index-shards N`): which shard
holds an id, where a shard keeps its store, and how the shards' answers make one answer.

Why split it: the index is brute force over one float32 matrix (ops/vector_index.py), 6 KiB per
1536-d item, so 10M videos are 61 GiB in one process and every search reads all of it. Over N
shards each replica holds 1/N of the items and scans them in parallel with the others (on N nodes
if the cluster places them so); a search asks every shard for its best k and keeps the best k of
those N k, which are exactly the k an unsplit index would return.

An item's shard is a hash of its id, crc32, the same in every process (Python's `hash()` of a
str is salted per process), so an add, a delete and an ingress filling the index from a cache all
reach the same shard without a directory of ids. With another N most ids hash elsewhere, so a
store written with one shard count is refused with another (`shard_store`) rather than served with
its items on the wrong shards.

Listing: shard 0's items in the order they were added, then shard 1's, and so on. Within one
index that is the order of adding; across shards there is no common clock, and a page only needs
an order that stays put.
"""

from __future__ import annotations

import heapq
import re
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from ops.index_log import LOG_NAME
from ops.vector_index import rank_key

T = TypeVar("T")

SHARD_DIR = re.compile(r"shard-(\d+)-of-(\d+)")


def shard_of(item_id: str, shards: int) -> int:
    return zlib.crc32(item_id.encode("utf-8")) % shards


def split_by_shard(items: Iterable[T], shards: int, item_id: Callable[[T], str] = str) -> list[list[T]]:
    """items -> one list per shard, each in the items' order."""
    parts: list[list[T]] = [[] for _ in range(shards)]
    for item in items:
        parts[shard_of(item_id(item), shards)].append(item)
    return parts


def merge_top_k(per_shard: list[list[dict]], k: int) -> list[dict]:
    """Each shard's results, in `rank_key` order (dicts with "score" and "id") -> the best k of
    all, in that order: what one index holding every item answers, ties included."""
    return list(heapq.merge(*per_shard, key=lambda result: rank_key((result["score"], result["id"]))))[:k]


def page_plan(counts: list[int], offset: int, limit: int) -> list[tuple[int, int, int]]:
    """A page of the concatenated listing (shard 0's items, then shard 1's, ...), given each
    shard's item count -> [(shard, offset in it, limit in it)] for the shards the page touches."""
    plan, start = [], 0
    for shard, count in enumerate(counts):
        lo, hi = max(offset, start), min(offset + limit, start + count)
        if lo < hi:
            plan.append((shard, lo - start, hi - lo))
        start += count
    return plan


def shard_dir_name(shard: int, shards: int) -> str:
    return f"shard-{shard:03d}-of-{shards:03d}"


def shard_store(store: str | Path, shard: int, shards: int) -> Path:
    """The directory shard `shard` of `shards` keeps its log in: the store itself for an unsplit
    index (as stores were before shards), `STORE/shard-002-of-004` otherwise. ValueError when the
    store holds an index split another way."""
    store = Path(store)
    found = store_layout(store)
    if found is not None and found != shards:
        raise ValueError(f"index store {store} holds an index split over {found} shard(s); this application "
                         f"serves {shards}: an item's shard is its id's hash modulo the shard count, so serve it "
                         f"with index_shards={found} (--index-shards {found}), or re-split it first with "
                         f"`vljepa index-reshard --store {store} --shards {shards}` (server stopped)")
    return store if shards == 1 else store / shard_dir_name(shard, shards)


def store_layout(store: str | Path) -> int | None:
    """How many shards the index kept in `store` is split over; None for a store holding no items yet."""
    store = Path(store)
    if (store / LOG_NAME).exists() and (store / LOG_NAME).stat().st_size:
        return 1
    counts = {int(match[2]) for path in (store.iterdir() if store.is_dir() else ())
              if path.is_dir() and (match := SHARD_DIR.fullmatch(path.name))}
    if len(counts) > 1:
        raise ValueError(f"index store {store} holds shard directories of several layouts "
                         f"({', '.join(str(c) for c in sorted(counts))} shards): give each layout its own store")
    return counts.pop() if counts else None
