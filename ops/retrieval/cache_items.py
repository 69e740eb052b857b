"""Which rows of feature caches the retrieval index holds, and what a build must change.

An item's id is `<cache name>/<shard>/<key>`, the cache's name being the last part of its path or
URL (`s3://bucket/caches/action100m` -> `action100m`). Not `shard/key` alone: two sources' caches
number their shards alike (`00000`), so several caches in one index would share ids. And not
qualified only when there are several: an id would then change when the operator adds a cache,
under every client that kept it. Caches of the same name are refused rather than numbered: an id
must not depend on the order the caches were given in.

The index holds a cache's captioned videos (media_kind video, task caption): what text-to-video
retrieval searches, each under its caption.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ops.cache.files import read_shard_columns, shard_rows_by_group

TEXT_COLUMNS = ["key", "media_kind", "task", "target"]
S_V_COLUMNS = ["s_v_shape", "s_v"]
# Shards whose text columns are read at once: on an object store each read is mostly waiting.
READ_THREADS = 16


def cache_name(url: str) -> str:
    """The last part of a cache's path or URL: what its items' ids start with."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def cache_names(caches: list[str]) -> dict[str, str]:
    """{cache: its name} for the caches one index is built from. ValueError for a cache given twice
    or two caches of the same name (their items' ids would collide)."""
    names: dict[str, str] = {}
    for cache in caches:
        name = cache_name(cache)
        if cache.rstrip("/") in (c.rstrip("/") for c in names):
            raise ValueError(f"index cache {cache} is given twice")
        clash = next((other for other, taken in names.items() if taken == name), None)
        if clash is not None:
            raise ValueError(f"index caches {clash} and {cache} share the name {name!r}, which their items' ids "
                             f"start with ({name}/<shard>/<key>): build from caches in directories of different names")
        if not name:
            raise ValueError(f"index cache {cache!r} has no name (its items' ids start with the last part of its path)")
        names[cache] = name
    return names


def cache_item_id(name: str, shard: str, key: str) -> str:
    return f"{name}/{shard}/{key}"


@dataclass(frozen=True)
class ListedShard:
    """One cached shard's captioned videos: their row numbers in the shard's file, ids and captions."""
    cache: str
    name: str
    shard: str
    rows: list[int]
    ids: list[str]
    captions: list[str]


def listed_shard(cache: str, name: str, shard: str) -> ListedShard:
    """The captioned videos of one cached shard, from its text columns (a few KB: no S_V is read)."""
    table = read_shard_columns(cache, shard, TEXT_COLUMNS).to_pydict()
    rows = [i for i, (kind, task) in enumerate(zip(table["media_kind"], table["task"]))
            if kind == "video" and task == "caption"]
    return ListedShard(cache, name, shard, rows, [cache_item_id(name, shard, table["key"][i]) for i in rows],
                       [table["target"][i] for i in rows])


def list_caches(shards: dict[str, list[str]]) -> list[ListedShard]:
    """{cache: its shard names} -> every shard's captioned videos, caches in the given order."""
    names = cache_names(list(shards))
    work = [(cache, names[cache], shard) for cache, cache_shards in shards.items() for shard in cache_shards]
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        return list(pool.map(lambda args: listed_shard(*args), work))


@dataclass
class CacheCounts:
    videos: int = 0  # captioned videos the cache lists
    unchanged: int = 0  # held already with the same caption: not predicted again
    new: int = 0  # not held: predicted and added
    changed: int = 0  # held with another caption (a cache rebuilt): predicted again and replaced


@dataclass
class BuildPlan:
    """What `vljepa index-build` does to an index table to make it mirror its caches."""
    predict: list[ListedShard]  # per shard, only the rows to predict
    counts: dict[str, CacheCounts] = field(default_factory=dict)  # per cache name
    stale: list[str] = field(default_factory=list)  # ids of cache items no listed cache holds now

    @property
    def new(self) -> int:
        return sum(c.new for c in self.counts.values())

    @property
    def changed(self) -> int:
        return sum(c.changed for c in self.counts.values())

    @property
    def to_predict(self) -> int:
        return sum(len(s.rows) for s in self.predict)


def plan_build(listed: list[ListedShard], held: dict[str, str | None]) -> BuildPlan:
    """listed: the caches' captioned videos; held: {id: caption} of the cache items the table holds
    now (not its HTTP adds). A video is predicted when the table lacks it or holds another caption
    for it; a held cache item that no listed shard names is stale (its cache rebuilt without it, or
    no longer listed)."""
    plan = BuildPlan(predict=[])
    seen: set[str] = set()
    for shard in listed:
        counts = plan.counts.setdefault(shard.name, CacheCounts())
        keep = []
        for position, (row, item_id, caption) in enumerate(zip(shard.rows, shard.ids, shard.captions)):
            seen.add(item_id)
            counts.videos += 1
            if item_id not in held:
                counts.new += 1
            elif held[item_id] != caption:
                counts.changed += 1
            else:
                counts.unchanged += 1
                continue
            keep.append(position)
        if keep:
            plan.predict.append(ListedShard(shard.cache, shard.name, shard.shard, [shard.rows[i] for i in keep],
                                            [shard.ids[i] for i in keep], [shard.captions[i] for i in keep]))
    plan.stale = sorted(item_id for item_id in held if item_id not in seen)
    return plan


def shard_work(shard: ListedShard) -> dict:
    """A shard's rows to predict as a Ray Data item (plain lists travel as Arrow)."""
    return {"cache": shard.cache, "name": shard.name, "shard": shard.shard, "rows": shard.rows, "ids": shard.ids,
            "captions": shard.captions}


def cached_rows(work: dict) -> Iterator[dict]:
    """A shard_work item -> its rows with their cached S_V ({id, caption, source, s_v_shape, s_v}),
    read a row group at a time: a task holds one group of S_V, not the shard's."""
    at = {int(row): (item_id, caption) for row, item_id, caption in zip(work["rows"], work["ids"], work["captions"])}
    for group in shard_rows_by_group(work["cache"], work["shard"], sorted(at), S_V_COLUMNS):
        for row, features in group:
            item_id, caption = at[row]
            yield {"id": item_id, "caption": caption, "source": work["name"],
                   "s_v_shape": np.asarray(features["s_v_shape"], dtype=np.int64), "s_v": features["s_v"]}
