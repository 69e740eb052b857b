"""Stream a feature cache's Parquet files as a training stage's rows, one or more epochs per pass.

Why not `ray.data.read_parquet`: Ray Train re-executes the dataset at every epoch (a pass), and
read_parquet's execution re-lists its files and restarts its read operator each time: ~1-2 s per
epoch (measured on the demo cache, 27 steps per epoch on 2 cores: every logging window with an
epoch boundary trained at ~70 samples/s instead of ~130; the restart was most of Ray Train's
overhead there). Here the dataset is a list of (cache, shard, epoch) items, each epoch in a seeded
file order of its own, and a map task reads each file with pyarrow, a row group at a time
(bounded memory: ops/cache/parquet.py): a restart costs ~0.2 s.

Ray-free: the items and the reader are plain Python, tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ops.cache.feature_cache import FeatureCache
from ops.cache.parquet import group_starts, rows_at, rows_by_group
from ops.train.collate import select_rows, selection_mask

FILTER_COLUMNS = ["media_kind", "task"]


@dataclass(frozen=True)
class CacheSource:
    """One cache a stage reads: which rows of it, and how many times over per epoch (its mixing
    weight): `keep` 1.0 reads every selected row once, 0.3 a seeded 30% of them (replayed
    pretraining data, a large source weighted down), 2.5 every row twice and a seeded half once
    more (a small source weighted up)."""

    url: str
    media_kinds: tuple[str, ...]
    tasks: tuple[str, ...]
    replay: bool = False
    keep: float = 1.0
    rows: int | None = None  # the selected rows once counted (pipelines.train.data.counted), per read

    def copies(self) -> list[float]:
        """The share of the rows each read of a file keeps: 2.5 -> [1.0, 1.0, 0.5]."""
        whole, part = divmod(self.keep, 1.0)
        return [1.0] * int(whole) + ([part] if part > 1e-9 else [])


def pass_items(sources: list[CacheSource], epochs: int, seed: int) -> list[dict]:
    """The file reads of one pass: every source's shards once per epoch (or as many times as its
    weight asks, each read a `copy`), each epoch in a seeded order of its own (so epochs differ
    beyond what the local shuffle buffer mixes, and copies of a file do not come together)."""
    reads = []
    for index, source in enumerate(sources):
        shards = require_feature_cache(source.url)
        reads += [(index, shard, copy) for copy in range(len(source.copies())) for shard in shards]
    items = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(reads))
        items += [{"source": int(reads[i][0]), "shard": reads[i][1], "copy": reads[i][2], "epoch": epoch}
                  for i in order]
    return items


def require_feature_cache(url: str, x_encoder: dict[str, str] | None = None, reader: str = "this run's preset") -> list[str]:
    """The cache's shard names; a clear error when `url` is not a feature cache (a typo, an unfinished
    cache-features run) or, given `x_encoder` (model.encoder_identity), when its features come from
    another x-encoder than the one `reader` reads features of: training on them would fail in the
    workers on a shape mismatch, or worse, not fail."""
    manifest = FeatureCache(url).manifest() or {}  # one read: on S3 each is a request
    shards = sorted(manifest.get("shards") or {})
    if not shards:
        raise ValueError(f"{url} holds no feature cache (no manifest.json with shards): run cache-features first")
    cached = {key: manifest.get("fingerprint_fields", {}).get(key) for key in x_encoder or {}}
    if x_encoder and cached != x_encoder:
        raise ValueError(f"{url} holds features of x-encoder {cached['x_encoder']} (config {cached['x_encoder_config_hash']}), "
                         f"{reader} reads features of {x_encoder['x_encoder']} (config {x_encoder['x_encoder_config_hash']}): "
                         "use a cache built with that x-encoder, or cache the shards again with it (cache-features --preset)")
    return shards


def selected_row_count(url: str, media_kinds: tuple[str, ...], tasks: tuple[str, ...]) -> tuple[int | None, dict[str, int]]:
    """(rows of the cache a stage selects, rows per "media_kind/task" of the whole cache), so a run
    can refuse a cache that cannot fill its batches before any worker starts (found by the workers,
    it is an error Ray Train retries --max-failures times). From the manifest: the shard markers
    count their rows by kind; a shard committed before they did is counted from its file's two
    small columns. A cache with no shards: (None, {})."""
    shards = (FeatureCache(url).manifest() or {}).get("shards") or {}
    if not shards:
        return None, {}
    counted = [counts["kinds"] for counts in shards.values() if "kinds" in counts]
    uncounted = shard_kinds(url, [shard for shard, counts in shards.items() if "kinds" not in counts])
    by_kind: dict[str, int] = {}
    for kinds in counted + uncounted:
        for kind, rows in kinds.items():
            by_kind[kind] = by_kind.get(kind, 0) + rows
    selected = sum(rows for kind, rows in by_kind.items()
                   if kind.split("/", 1)[0] in media_kinds and kind.split("/", 1)[1] in tasks)
    return selected, dict(sorted(by_kind.items()))


def shard_kinds(url: str, shards: list[str]) -> list[dict[str, int]]:
    """Rows per "media_kind/task" of each shard, from its file's columns (a few KB each; read 16 at
    a time, an object store's requests being mostly waiting)."""
    def count(shard: str) -> dict[str, int]:
        table = read_shard_columns(url, shard, ["media_kind", "task"])
        kinds: dict[str, int] = {}
        for media_kind, task in zip(table["media_kind"].to_pylist(), table["task"].to_pylist()):
            kinds[f"{media_kind}/{task}"] = kinds.get(f"{media_kind}/{task}", 0) + 1
        return kinds

    if not shards:
        return []
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(count, shards))


def read_shard_columns(url: str, shard: str, columns: list[str]) -> pa.Table:
    """Only `columns` of one cached shard: the text columns of a shard are a few KB where its S_V
    is megabytes, so a reader that needs S_V for a few rows reads the rest first and decides
    (then read_shard_rows)."""
    cache = FeatureCache(url)
    with cache.fs.open(cache.path(f"{shard}.parquet"), "rb") as handle:
        return pq.read_table(handle, columns=columns)


def read_shard_rows(url: str, shard: str, indices: list[int], columns: list[str]) -> list[dict]:
    """The rows numbered `indices` of one cached shard (S_V as numpy), reading only the row groups
    that hold them."""
    cache = FeatureCache(url)
    with cache.fs.open(cache.path(f"{shard}.parquet"), "rb") as handle:
        return rows_at(handle, indices, columns)


def shard_rows_by_group(url: str, shard: str, indices: list[int], columns: list[str]) -> Iterator[list[tuple[int, dict]]]:
    """[(index, row)] of the rows numbered `indices` of one cached shard (S_V as numpy), in file
    order, a row group's worth at a time: a reader of many rows holds one group of S_V (16 MiB),
    not the shard's."""
    cache = FeatureCache(url)
    with cache.fs.open(cache.path(f"{shard}.parquet"), "rb") as handle:
        yield from rows_by_group(handle, indices, columns)


@dataclass(frozen=True)
class CacheFileReader:
    """`map_batches` callable: a batch of pass items -> the selected rows of their files, tables of
    at most `record_batch_rows` rows within a row group, with `replay` and `epoch` columns added."""

    sources: tuple[CacheSource, ...]
    columns: tuple[str, ...]
    seed: int = 0
    record_batch_rows: int = 256

    def __call__(self, items: dict[str, np.ndarray]) -> Iterator[pa.Table]:
        for source_index, shard, copy, epoch in zip(items["source"], items["shard"], items["copy"], items["epoch"]):
            yield from self.read_file(int(source_index), str(shard), int(epoch), int(copy))

    def read_file(self, source_index: int, shard: str, epoch: int, copy: int = 0) -> Iterator[pa.Table]:
        source = self.sources[source_index]
        share = source.copies()[copy]
        cache = FeatureCache(source.url)
        columns = list(dict.fromkeys([*self.columns, *FILTER_COLUMNS]))
        # a seeded draw per (epoch, file, copy): a subsampled subset is the same in a resumed run
        # (a later copy adds a number no byte of the name can be: the first keeps its old draw)
        later_copy = [256 + copy] if copy else []
        sampler = np.random.default_rng([self.seed, epoch, source_index, *shard.encode(), *later_copy])
        with cache.fs.open(cache.path(f"{shard}.parquet"), "rb") as handle:
            parquet = pq.ParquetFile(handle)
            drawn = None if share >= 1.0 else self.drawn_rows(parquet, source, share, sampler)
            starts = group_starts(parquet)
            for group, (start, stop) in enumerate(zip(starts[:-1], starts[1:])):
                if drawn is not None and not drawn[start:stop].any():
                    continue  # a subsampled source: no row of this group drawn, its S_V never read
                table = parquet.read_row_group(group, columns=columns)  # one row group in memory at a time
                if drawn is not None:
                    table = table.filter(pa.array(drawn[start:stop]))
                table = select_rows(table, list(source.media_kinds), list(source.tasks), source.replay)
                for record_batch in table.to_batches(max_chunksize=self.record_batch_rows):
                    yield pa.Table.from_batches([record_batch]).append_column(
                        "epoch", pa.array(np.full(record_batch.num_rows, epoch, dtype=np.int64)))

    @staticmethod
    def drawn_rows(parquet: pq.ParquetFile, source: CacheSource, share: float, sampler: np.random.Generator) -> np.ndarray:
        """Which of the file's rows a read keeping `share` of the selected ones takes: one draw per
        selected row, in file order (the same rows whatever the file's row groups, and as before
        they existed). Decided from the small filter columns, before any S_V is read."""
        selected = selection_mask(parquet.read(columns=FILTER_COLUMNS), list(source.media_kinds), list(source.tasks))
        selected = selected.to_numpy(zero_copy_only=False)
        drawn = np.zeros(len(selected), dtype=bool)
        drawn[np.flatnonzero(selected)] = sampler.random(int(selected.sum())) < share
        return drawn
