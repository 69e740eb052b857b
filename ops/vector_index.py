"""The retrieval index's in-memory part: unit embeddings in contiguous float32 blocks
(ops/vector_block.py), searched with a matrix-vector product and a partial sort, or for several
queries at once (search_many) with one matrix-matrix product, which reads a block once for all of
them.

Exact by default: one block holds every item and a search scores every row. The matrix is kept,
not rebuilt per query: stacking N embeddings for every search (what the index did first) copies
N x D floats per query, 600 MB at 100k items of 1536-d, where the product itself only reads them
(benchmarks/index_search.py). Listing keeps insertion order.

Partitioned (`partition(lists, probe)`, `vljepa serve --index-lists`), an inverted file as faiss's
IVF-Flat: the items are grouped by their nearest of `lists` centroids (spherical k-means,
ops/kmeans.py), a block per list, and a search scores only the blocks of the `probe` centroids
nearest the query: about probe/lists of the rows, so a search costs that fraction of the exact one
and may miss an item filed under a list it did not probe (benchmarks/index_ivf.py measures the
recall). Each item is held once, in its list's block, so the partition costs no memory beyond the
centroids. Design choices:
- Built once the index holds TRAIN_PER_LIST items per list (below, k-means has too little to learn
  from, and the exact search is cheap anyway), and rebuilt once it is REBUILD_GROWTH times the size
  it was built at, so that centroids learnt from a cache's first items follow what came after: by
  the add that gets it there, or, with `build_later` (a Serve shard: pipelines/index_upkeep.py), by
  its owner in a thread from `build_sample()` and `rows_of()`, the lists filled outside the
  owner's lock and taken with `take_lists()`. A build holds the old and the new blocks at once:
  twice the embeddings' memory, while the new ones are filled.
- Kept across restarts by a store (ops/index_partition_file.py): a replica files each item under
  the list its snapshot block or log line names (`partition(..., saved=, filed=)`), neither k-means
  nor scoring every item against the centroids again; a snapshot's blocks that are those lists
  already (`fill(..., block_sizes)`) are taken as they are. Each build has a `generation`, a random
  name, so that a label written under one build is never read as another's.
- Equal scores rank in id order (`rank_key`, also how shards' answers merge): an answer depends on
  the items, not on which block or slot holds them, which deletes, compactions, builds and
  reshards change.
- Searches with an id prefix stay exact (every block, the prefix's rows): a prefix names one
  cache's items, which a partition of all of them serves badly. So does a query whose probed lists
  hold fewer than k items.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterator

import numpy as np

from ops.index_partition_file import SavedPartition
from ops.kmeans import members_by_cluster, nearest, sample_positions, spherical_kmeans
from ops.pending_lists import PendingLists
from ops.vector_block import VectorBlock

log = logging.getLogger(__name__)

# From this many queries at once, one matrix-matrix product beats a matrix-vector product each.
# Below it OpenBLAS's matrix-matrix kernel is slower than the loop (2 queries: half the speed);
# at 6 it is x1.35-1.5 faster, at 16 x3.7-4.8 (1k-200k rows of 1536, 2 cores; docs/benchmarks.md).
GEMM_FROM = 6
# faiss warns below 39 training points per centroid: fewer give centroids that fit noise
TRAIN_PER_LIST = 39
REBUILD_GROWTH = 4

# (block, its slots the scores are for (None: all of its live rows), scores): part of a query's candidates
Scored = tuple[int, np.ndarray | None, np.ndarray]


def rank_key(scored: tuple[float, str]) -> tuple[float, str]:
    """(score, id) -> its place in an answer: higher scores first, equal scores by id."""
    return -scored[0], scored[1]


class VectorIndex:
    def __init__(self, width: int):
        self.width = width  # the model's embedding width: every item and query has it
        self.meta: dict[str, dict] = {}  # id -> meta; insertion-ordered, so list() is too
        self.places: dict[str, tuple[int, int]] = {}  # id -> (block, slot)
        self.blocks = [VectorBlock(width)]
        self.centroids: np.ndarray | None = None  # (lists, D) once partitioned: block i holds list i
        self.lists, self.probe = 0, 1  # partition(); 0 lists: exact
        self.built_at = 0  # items the partition was built over
        self.generation: str | None = None  # names the partition's build (None: exact); see the module's docstring
        self.announce: Callable[[str], None] = log.info  # where a build is reported
        self.build_later = False  # True: adds never build; the owner builds when build_due() (take_lists())
        self._layout = 0  # changes whenever an id gains, loses or moves slot
        self._prefix_slots: tuple = (None, None, None)  # (layout, prefix, slots per block) of the last prefix

    def __len__(self) -> int:
        return len(self.meta)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.meta

    @property
    def nbytes(self) -> int:
        """Memory the embeddings' blocks hold (their capacity, not only live rows)."""
        return sum(block.matrix.nbytes for block in self.blocks)

    def partition(self, lists: int, probe: int, announce: Callable[[str], None] | None = None,
                  saved: SavedPartition | None = None, filed: dict[str, int] | None = None) -> None:
        """Searches score only the items filed under the `probe` of `lists` centroids nearest the
        query; 0 lists, or probe >= lists, keeps every search exact. Builds the partition now when
        the index already holds enough items (a store replayed at start). announce: told of each
        build in a line (default: this module's logger at INFO). saved: the partition a store kept,
        taken instead of a build when it has `lists` centroids, with `filed` (id -> list, labels
        of its generation) placing the items it names without scoring them."""
        if lists < 0 or probe < 1:
            raise ValueError(f"an index partition needs lists >= 0 and probe >= 1, not {lists} and {probe}")
        self.lists, self.probe = lists, probe
        if announce is not None:
            self.announce = announce
        restoring = saved is not None and saved.lists == lists > probe and saved.centroids.shape[1] == self.width
        if not restoring and (self.centroids is not None or len(self.blocks) > 1):
            self._regroup(None)  # back to one block; rebuilt below if the new settings partition
        if restoring:
            self._restore(saved, filed or {})
        self._rebuild_if_due()

    def fill(self, ids: list[str], vectors: np.ndarray, listing: list[tuple[int, dict]],
             block_sizes: list[int] | None = None) -> None:
        """Fills an empty, exact index in one step (a store's snapshot): `vectors` (N, D) the rows of
        `ids`, copied once into blocks of `block_sizes` rows (default: one block); listing: (row,
        meta) of each item in listing order. Blocks that are a kept partition's lists are taken as
        they are by partition(saved=...), without filing their items again."""
        if len(self) or self.centroids is not None:
            raise ValueError("fill() takes an empty, exact index")
        sizes = [len(ids)] if block_sizes is None else list(block_sizes)
        if len(ids) != len(vectors) or len(listing) != len(ids) or sum(sizes) != len(ids):
            raise ValueError(f"{len(ids)} ids, {len(vectors)} rows, {len(listing)} listed items and blocks of "
                             f"{sum(sizes)} rows: not one item each")
        if len(ids) and vectors.shape[1] != self.width:
            raise ValueError(f"rows of width {vectors.shape[1]} for an index of width {self.width}")
        starts = np.cumsum([0] + sizes).tolist()
        self.blocks = [VectorBlock.of(ids[a:b], vectors[a:b]) if b > a else VectorBlock(self.width)
                       for a, b in zip(starts, starts[1:])] or [VectorBlock(self.width)]
        self.places = {item_id: (b, slot) for b, block in enumerate(self.blocks) for slot, item_id in enumerate(block.ids)}
        self.meta = {ids[row]: meta for row, meta in listing}
        if len(self.meta) != len(ids):
            raise ValueError("an id listed twice")
        self._layout += 1

    def lists_for(self, vectors: np.ndarray) -> np.ndarray | None:
        """(N, D) vectors -> the list each would be filed under now (None: the index is exact)."""
        return None if self.centroids is None else nearest(vectors, self.centroids)

    def list_of(self, item_id: str) -> int | None:
        """The list an item is filed under (None: the index is exact)."""
        return None if self.centroids is None else self.places[item_id][0]

    def add(self, item_id: str, embedding: np.ndarray, meta: dict, target: int | None = None) -> None:
        """Adds, or replaces the item with this id (keeping its place in the listing). target: its
        list, when the caller found it already (lists_for)."""
        vector = self.vector(embedding)
        if target is None and self.centroids is not None:
            target = int(np.argmax(self.centroids @ vector))
        self._put(item_id, vector, meta, target or 0)
        self._rebuild_if_due()

    def add_many(self, items: list[tuple[str, np.ndarray, dict]], targets: np.ndarray | None = None) -> None:
        """add() each (id, embedding, meta) in turn, their lists found in one product with the
        centroids: one product per item would read all the centroids per item (4096 x 1536: 25 MB),
        hours for a cache of millions filling a partitioned index. targets: their lists, when the
        caller found them already (lists_for)."""
        if not items:
            return
        vectors = [self.vector(embedding) for _, embedding, _ in items]
        if targets is None:  # stacked only to find their lists: a caller that found them has stacked them
            targets = (np.zeros(len(items), dtype=np.int64) if self.centroids is None
                       else nearest(np.stack(vectors), self.centroids))
        for (item_id, _, meta), vector, target in zip(items, vectors, np.asarray(targets).tolist()):
            self._put(item_id, vector, meta, target)
        self._rebuild_if_due()

    def _put(self, item_id: str, vector: np.ndarray, meta: dict, target: int) -> None:
        place = self.places.get(item_id)
        if place is not None and place[0] == target:
            self.blocks[target].matrix[place[1]] = vector
        else:
            if place is not None:  # its new embedding belongs to another list
                self._free(place)
            self.places[item_id] = (target, self.blocks[target].append(item_id, vector))
            self._layout += 1
        self.meta[item_id] = meta

    def holds(self, item_id: str, embedding: np.ndarray, meta: dict) -> bool:
        """Whether the index already has exactly this item (same embedding bits, same meta)."""
        place = self.places.get(item_id)
        return (place is not None and self.meta[item_id] == meta
                and np.array_equal(self.blocks[place[0]].matrix[place[1]], embedding))

    def delete(self, item_id: str) -> bool:
        place = self.places.pop(item_id, None)
        if place is None:
            return False
        del self.meta[item_id]
        self._free(place)
        self._layout += 1
        return True

    def list(self, offset: int = 0, limit: int | None = None, prefix: str | None = None) -> list[dict]:
        """Items in insertion order, from `offset`, at most `limit` of them; with `prefix`, only
        those whose id starts with it (one cache's items: `eval/`)."""
        stop = None if limit is None else offset + limit
        return [{"id": item_id, **self.meta[item_id]}
                for item_id in itertools.islice(self.matching(prefix), offset, stop)]

    def count(self, prefix: str | None = None) -> int:
        """How many items (whose id starts with `prefix`): a listing's pages, one scan."""
        return len(self) if prefix is None else sum(map(len, self.slots_matching(prefix)))

    def matching(self, prefix: str | None) -> Iterator[str]:
        """Ids in insertion order, those starting with `prefix` when given: a scan of the ids (a
        string comparison each, ~0.1 s per million items), where a search is a scan of the matrix."""
        return iter(self.meta) if prefix is None else (item_id for item_id in self.meta if item_id.startswith(prefix))

    def items(self) -> Iterator[tuple[str, np.ndarray, dict]]:
        """(id, embedding, meta) in insertion order."""
        for item_id, meta in self.meta.items():
            block, slot = self.places[item_id]
            yield item_id, self.blocks[block].matrix[slot], meta

    def search(self, query: np.ndarray, k: int, prefix: str | None = None, probe: int | None = None) -> list[dict]:
        """The k items of highest dot product with `query` (cosine for unit vectors), best first;
        with `prefix`, among the items whose id starts with it. Partitioned: among the items of the
        `probe` lists nearest the query (default: partition()'s)."""
        return self.search_many([query], k, prefix, probe)[0]

    def search_many(self, queries, k: int, prefix: str | None = None, probe: int | None = None) -> list[list[dict]]:
        """search() for each of `queries` (the same k, prefix and probe), scoring them against each
        block in one pass: a search is bound by reading the matrix (1.2 GB at 200k items of 1536-d),
        so Q queries read together cost little more than one (benchmarks/index_search.py)."""
        queries = np.stack([self.vector(query) for query in queries])
        probe = self.probe if probe is None else probe
        if prefix is None and self.centroids is not None and probe < len(self.centroids):
            return self._search_probed(queries, k, probe)
        return self._search_exact(queries, k, prefix)

    def _search_exact(self, queries: np.ndarray, k: int, prefix: str | None) -> list[list[dict]]:
        selected = None if prefix is None else self.slots_matching(prefix)
        parts: list[tuple[int, np.ndarray | None, np.ndarray]] = []  # (block, slots, (Q, n) scores)
        for b, block in enumerate(self.blocks):
            slots = None if selected is None else selected[b]
            if not len(block) or (slots is not None and not len(slots)):
                continue
            scores = scores_of(block.live, queries)
            # scoring every row and keeping some beats copying those rows out
            parts.append((b, slots, scores if slots is None else scores[:, slots]))
        return [self._ranked([(b, slots, scores[q]) for b, slots, scores in parts], k) for q in range(len(queries))]

    def _search_probed(self, queries: np.ndarray, k: int, probe: int) -> list[list[dict]]:
        """Each query against the blocks of its `probe` nearest centroids; a block probed by several
        of the queries scores them in one product. A query whose lists hold fewer than k items
        (of an index holding at least k) is searched exactly."""
        centroid_scores = queries @ self.centroids.T  # (Q, lists)
        probed = np.argpartition(-centroid_scores, probe - 1, axis=1)[:, :probe]  # (Q, probe)
        askers: dict[int, list[int]] = {}  # list -> the queries probing it
        for q, lists in enumerate(probed):
            for b in lists:
                askers.setdefault(int(b), []).append(q)
        parts: list[list[Scored]] = [[] for _ in queries]
        for b in sorted(askers):  # in list order, whoever asked: a query's candidates in one order always
            block, asking = self.blocks[b], askers[b]
            if len(block):
                for q, scores in zip(asking, scores_of(block.live, queries[asking])):
                    parts[q].append((b, None, scores))
        wanted = min(k, len(self))
        return [self._ranked(query_parts, k) if sum(len(p[2]) for p in query_parts) >= wanted
                else self._search_exact(queries[q:q + 1], k, None)[0] for q, query_parts in enumerate(parts)]

    def _ranked(self, parts: list[Scored], k: int) -> list[dict]:
        """A query's scores, in parts (a block's rows, or some of them) -> its k best items, best
        first; equal scores in id order (`rank_key`), so an answer does not depend on where the
        items sit: a delete, a compaction, a partition or a reshard moves them."""
        if not parts:
            return []
        scores = parts[0][2] if len(parts) == 1 else np.concatenate([p[2] for p in parts])
        count = len(scores)
        k = min(k, count)
        if k < count:  # every item scoring at least the k-th best: the k best plus those tied with the last
            kth_best = np.partition(scores, count - k)[count - k]
            candidates = np.flatnonzero(scores >= kth_best)
        else:
            candidates = np.arange(count)
        if len(parts) == 1:  # the exact index's one block: positions are its slots (or index `slots`)
            parts_of, offsets = [0] * len(candidates), candidates.tolist()
        else:
            starts = np.cumsum([0] + [len(p[2]) for p in parts])
            parts_of = (np.searchsorted(starts, candidates, side="right") - 1).tolist()
            offsets = [int(i) - int(starts[p]) for i, p in zip(candidates, parts_of)]
        found = []
        for i, part, offset in zip(candidates.tolist(), parts_of, offsets):
            b, slots, _ = parts[part]
            found.append((float(scores[i]), self.blocks[b].ids[offset if slots is None else int(slots[offset])]))
        found.sort(key=rank_key)
        return [{"id": item_id, "score": score, **self.meta[item_id]} for score, item_id in found[:k]]

    def slots_matching(self, prefix: str) -> list[np.ndarray]:
        """Per block, the slots of the ids starting with `prefix`, kept for the next search with the
        same prefix (a client searching one cache's videos asks with it every time) until slots change."""
        if self._prefix_slots[:2] != (self._layout, prefix):
            slots = [np.fromiter((slot for slot, item_id in enumerate(block.ids) if item_id.startswith(prefix)),
                                 np.int64) for block in self.blocks]
            self._prefix_slots = (self._layout, prefix, slots)
        return self._prefix_slots[2]

    def vector(self, embedding: np.ndarray) -> np.ndarray:
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.width:
            raise ValueError(f"an embedding of width {vector.shape[0]} for an index of width {self.width}")
        return vector

    def _free(self, place: tuple[int, int]) -> None:
        block, slot = place
        moved = self.blocks[block].remove(slot)
        if moved is not None:
            self.places[moved] = (block, slot)

    def build_due(self) -> bool:
        """Whether the partition should be built now: none yet and TRAIN_PER_LIST items per list,
        or REBUILD_GROWTH times the items it was built over."""
        count = len(self)
        if self.probe >= self.lists or count < TRAIN_PER_LIST * self.lists:
            return False
        return self.centroids is None or count >= REBUILD_GROWTH * self.built_at

    def build_sample(self, seed: int = 0) -> np.ndarray:
        """A copy of the rows a build's k-means learns from (ops.kmeans.sample_positions, as
        spherical_kmeans draws them): what a build elsewhere (pipelines/index_upkeep.py) needs of
        the index, without holding every row twice."""
        picks = sample_positions(len(self), self.lists, np.random.default_rng(seed))
        starts = np.cumsum([0] + [len(block) for block in self.blocks])
        owners = np.searchsorted(starts, picks, side="right") - 1
        rows = np.empty((len(picks), self.width), dtype=np.float32)
        for b in np.unique(owners).tolist():
            mine = owners == b
            rows[mine] = self.blocks[b].matrix[picks[mine] - starts[b]]
        return rows

    def rows_of(self, item_ids: list[str], out: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """(the ids of `item_ids` the index holds, a copy of their rows). out: a (>= len(item_ids),
        width) float32 buffer to copy them into (the rows returned are its first ones), allocated
        and touched by a caller holding a lock for the copy only: a fresh 100 MB array first
        touched inside it stalled on page faults, up to a second on the dev VM."""
        held = [item_id for item_id in item_ids if item_id in self.places]
        rows = np.empty((len(held), self.width), dtype=np.float32) if out is None else out[: len(held)]
        for i, item_id in enumerate(held):
            block, slot = self.places[item_id]
            rows[i] = self.blocks[block].matrix[slot]
        return held, rows

    def take_lists(self, pending: PendingLists, built_over: int) -> list[VectorBlock]:
        """Takes a partition built and filled elsewhere (ops/pending_lists.py), which must hold
        every item of the index as it is now, each in the list of its current row. -> the blocks
        it replaces, for the caller to drop outside its lock (freeing a large index's takes a while)."""
        if len(pending.centroids) != self.lists or pending.centroids.shape[1] != self.width:
            raise ValueError(f"{pending.centroids.shape} centroids for an index of {self.lists} lists "
                             f"of width {self.width}")
        rows = sum(len(block) for block in pending.blocks)  # counts, not a scan of the ids: this runs under a lock
        if len(pending) != len(self) or rows != len(pending):
            raise ValueError(f"the lists filed hold {len(pending)} items in {rows} rows, the index {len(self)}: "
                             "not the same items")
        replaced = self.blocks
        self.blocks, self.places, self.centroids = pending.blocks, pending.places, pending.centroids
        self.built_at, self.generation = built_over, secrets.token_hex(4)
        self._layout += 1
        return replaced

    def _rebuild_if_due(self) -> None:
        if self.build_later or not self.build_due():
            return
        count = len(self)
        started = time.perf_counter()
        ids, vectors = self._all_rows()
        self._regroup(spherical_kmeans(vectors, self.lists), ids, vectors)
        self.built_at, self.generation = count, secrets.token_hex(4)
        self.announce(f"retrieval index: {count} items filed under {self.lists} lists in "
                      f"{time.perf_counter() - started:.1f} s (a search probes {self.probe})")

    def _restore(self, saved: SavedPartition, filed: dict[str, int]) -> None:
        """The saved partition's lists, each item in the one `filed` names (_file_under)."""
        started = time.perf_counter()
        scored = self._file_under(saved.centroids, filed)
        self.built_at, self.generation = saved.built_at, saved.generation
        self.announce(f"retrieval index: {len(self)} items filed under the store's {saved.lists} lists "
                      f"({scored} scored against their centroids) in {time.perf_counter() - started:.1f} s "
                      f"(a search probes {self.probe})")

    def _file_under(self, centroids: np.ndarray, filed: dict[str, int]) -> int:
        """Files each item under the list of `centroids` that `filed` names; the others (added under
        another build, changed since they were labelled, or whose label was lost or is past the
        lists) are scored against the centroids. Blocks that hold exactly those lists already (a
        snapshot's, filled by list) are kept as they are: regrouping would copy every embedding
        once more (61 GB for a 10M-item shard of 1536-d). -> how many items were scored."""
        ids = [item_id for block in self.blocks for item_id in block.ids]
        labels = np.fromiter((filed.get(item_id, -1) for item_id in ids), np.int64, len(ids))
        labels[labels >= len(centroids)] = -1  # a label past the lists (a damaged line): scored below
        unfiled = np.flatnonzero(labels < 0)
        if len(unfiled):
            labels[unfiled] = nearest(self.rows_of([ids[i] for i in unfiled.tolist()])[1], centroids)
        current = np.repeat(np.arange(len(self.blocks)), [len(block) for block in self.blocks])
        if len(self.blocks) == len(centroids) and np.array_equal(labels, current):
            self.centroids = centroids
            self._layout += 1
        else:
            self._regroup(centroids, *self._all_rows(), labels)
        return len(unfiled)

    def _all_rows(self) -> tuple[list[str], np.ndarray]:
        """Every item's id and embedding, in block order (one block: its live rows, not copied)."""
        if len(self.blocks) == 1:
            return self.blocks[0].ids, self.blocks[0].live
        return ([item_id for block in self.blocks for item_id in block.ids],
                np.concatenate([block.live for block in self.blocks]))

    def _regroup(self, centroids: np.ndarray | None, ids: list[str] | None = None,
                 vectors: np.ndarray | None = None, labels: np.ndarray | None = None) -> None:
        """New blocks: one per centroid, each holding the items nearest it (or those `labels` file
        under it); None: one block of all."""
        if ids is None:
            ids, vectors = self._all_rows()
        if labels is None:
            labels = np.zeros(len(ids), dtype=np.int64) if centroids is None else nearest(vectors, centroids)
        lists = 1 if centroids is None else len(centroids)
        blocks = [VectorBlock.of([ids[i] for i in members], vectors[members])
                  for members in members_by_cluster(labels, lists)]
        self.blocks, self.centroids = blocks, centroids
        if centroids is None:
            self.generation = None
        self.places = {item_id: (b, slot) for b, block in enumerate(blocks) for slot, item_id in enumerate(block.ids)}
        self._layout += 1


def scores_of(rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(n, D) rows, (Q, D) queries -> (Q, n) dot products."""
    if len(queries) < GEMM_FROM:  # BLAS's matrix-matrix kernels lose to matrix-vector ones here
        return np.stack([rows @ query for query in queries])
    # rows x queries is the faster of the two orders; each query's scores then made contiguous
    return np.ascontiguousarray((rows @ queries.T).T)
