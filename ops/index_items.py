"""Ids of the retrieval index's items that come from feature caches (`vljepa serve --index-cache`).

An item's id is `<cache name>/<shard>/<key>`, the cache's name being the last part of its path or
URL (`s3://bucket/caches/action100m` -> `action100m`). Not `shard/key` alone: two sources' caches
number their shards alike (`00000`), so several caches in one index would share ids. And not
qualified only when there are several: an id would then change when the operator adds a cache,
under every client that kept it. Caches of the same name are refused rather than numbered: an id
must not depend on the order the caches were given in.
"""

from __future__ import annotations


def cache_name(url: str) -> str:
    """The last part of a cache's path or URL: what its items' ids start with."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def cache_names(caches: list[str]) -> dict[str, str]:
    """{cache: its name} for the caches one index is filled from. ValueError for a cache given twice
    or two caches of the same name (their items' ids would collide)."""
    names: dict[str, str] = {}
    for cache in caches:
        name = cache_name(cache)
        if cache.rstrip("/") in (c.rstrip("/") for c in names):
            raise ValueError(f"index cache {cache} is given twice")
        clash = next((other for other, taken in names.items() if taken == name), None)
        if clash is not None:
            raise ValueError(f"index caches {clash} and {cache} share the name {name!r}, which their items' ids "
                             f"start with ({name}/<shard>/<key>): serve caches from directories of different names")
        if not name:
            raise ValueError(f"index cache {cache!r} has no name (its items' ids start with the last part of its path)")
        names[cache] = name
    return names


def cache_item_id(name: str, shard: str, key: str) -> str:
    return f"{name}/{shard}/{key}"
