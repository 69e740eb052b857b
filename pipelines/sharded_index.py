"""The ingress's one view of the retrieval index, whatever the number of shards it is split over.

Each method is the RetrievalIndex deployment's method of the same name (pipelines/serve_index.py),
awaited (search: its search_queued, which answers concurrent searches together): a call about one
id goes to the shard its id hashes to, a call about many ids goes to each shard with its part of
them (in parallel), and a search or a listing asks every shard and combines their answers
(ops/index_shards.py). With one shard every call is the one call it was.
"""

from __future__ import annotations

import asyncio

import numpy as np

from ops.index_shards import merge_top_k, page_plan, shard_of, split_by_shard


class ShardedIndex:
    def __init__(self, shards: list):
        """shards: a DeploymentHandle per shard, shard i at position i (RetrievalIndex with shard=i)."""
        self.shards = shards

    def of(self, item_id: str):
        return self.shards[shard_of(item_id, len(self.shards))]

    async def add(self, item_id: str, embedding: np.ndarray, meta: dict) -> dict:
        return await self.of(item_id).add.remote(item_id, embedding, meta)

    async def delete(self, item_id: str) -> bool:
        return await self.of(item_id).delete.remote(item_id)

    async def add_many(self, items: list[tuple[str, np.ndarray, dict]]) -> int:
        parts = split_by_shard(items, len(self.shards), lambda item: item[0])
        return sum(await asyncio.gather(*(shard.add_many.remote(part) for shard, part in zip(self.shards, parts) if part)))

    async def missing(self, items: list[tuple[str, dict]]) -> list[str]:
        parts = split_by_shard(items, len(self.shards), lambda item: item[0])
        found = await asyncio.gather(*(shard.missing.remote(part) for shard, part in zip(self.shards, parts) if part))
        return [item_id for part in found for item_id in part]

    async def drop_stale_cache_items(self, listed: dict[str, list[str]]) -> list[str]:
        """Each shard hears only of the ids it holds; it drops the cache items it has that are not
        among them (a shard told of no id of a cache holds none of that cache's current items)."""
        count = len(self.shards)
        per_shard: list[dict[str, list[str]]] = [{} for _ in range(count)]
        for cache, ids in listed.items():
            for item_id in ids:
                per_shard[shard_of(item_id, count)].setdefault(cache, []).append(item_id)
        dropped = await asyncio.gather(*(shard.drop_stale_cache_items.remote(part)
                                         for shard, part in zip(self.shards, per_shard)))
        return [item_id for part in dropped for item_id in part]

    async def search(self, query: np.ndarray, k: int, prefix: str | None = None, probe: int | None = None) -> list[dict]:
        found = await asyncio.gather(*(shard.search_queued.remote(query, k, prefix, probe) for shard in self.shards))
        return merge_top_k(list(found), k)

    async def page(self, offset: int, limit: int, prefix: str | None = None) -> tuple[list[dict], int]:
        """(a page of the listing, how many items it has): shard by shard, each in the order of adding."""
        if len(self.shards) == 1:
            return await self.shards[0].page.remote(offset, limit, prefix)
        counts = [total for _, total in await asyncio.gather(*(shard.page.remote(0, 0, prefix) for shard in self.shards))]
        plan = page_plan(counts, offset, limit)
        pages = await asyncio.gather(*(self.shards[shard].page.remote(start, size, prefix) for shard, start, size in plan))
        return [item for items, _ in pages for item in items], sum(counts)
