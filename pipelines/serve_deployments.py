"""The model-side Ray Serve deployments of the inference graph.

    VisualPredictor   x-encoder + predictor: frames (+ query) -> Ŝ_Y, dynamically batched
    TextEncoder       y-encoder: texts -> S_Y, dynamically batched, LRU cache for label texts
    RetrievalIndex    one replica per shard of the video index (id -> Ŝ_Y): add / list / delete /
                      search, kept on disk across restarts when given a store directory

Each loads the exported model once in `__init__` (one GPU per visual replica when present), from
the source it is given (a directory or an MLflow URI), resolved on its own node.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
import torch
from ray import serve

from model.export import load_model, read_manifest
from model.tasks import embed_clips, embed_features
from ops.index_log import IndexLog
from ops.index_shards import shard_store
from ops.media_input import frames_to_input
from ops.vector_index import VectorIndex
from pipelines.model_source import resolve_model_dir
from pipelines.replica_notice import notice


def same_shape_batches(shapes: list[tuple], max_size: int) -> list[list[int]]:
    """Indices of inputs of one shape together (stacked without padding), at most `max_size` a batch."""
    by_shape: dict[tuple, list[int]] = {}
    for i, shape in enumerate(shapes):
        by_shape.setdefault(tuple(shape), []).append(i)
    return [rows[start : start + max_size] for rows in by_shape.values() for start in range(0, len(rows), max_size)]


class Answers:
    """`ready()` for the ingress's /readyz: it answers once the replica has loaded its model."""

    async def ready(self) -> bool:
        return True


# max_ongoing_requests >= max_batch_size, or Serve never lets a batch fill up.
@serve.deployment(max_ongoing_requests=32)
class VisualPredictor(Answers):
    def __init__(self, model: str, max_batch_size: int = 16):
        model_dir = resolve_model_dir(model)  # here, on the replica's own node (pipelines.model_source)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(model_dir).eval().to(self.device)
        self.caption_prompt = read_manifest(model_dir)["metadata"].get("caption_prompt", "")
        self.predict.set_max_batch_size(max_batch_size)  # 1 turns dynamic batching off
        self.max_batch_size = max_batch_size

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict(self, requests: list[tuple[np.ndarray, str | None]]) -> list[np.ndarray]:
        """[(frames (T, S, S, 3) uint8, query or None for the model's captioning prompt)] -> Ŝ_Y."""
        out: list[np.ndarray | None] = [None] * len(requests)
        # images and clips encode separately, in one call each (@serve.batch bounds the batch)
        for rows in same_shape_batches([frames.shape for frames, _ in requests], len(requests)):
            frames = torch.stack([frames_to_input(requests[i][0]) for i in rows])
            queries = [requests[i][1] if requests[i][1] is not None else self.caption_prompt for i in rows]
            for i, embedding in zip(rows, embed_clips(self.model, frames, queries, self.device)):
                out[i] = embedding
        return out

    async def predict_cached(self, features: list[np.ndarray]) -> list[np.ndarray]:
        """Cached S_V [(N, D)] -> their Ŝ_Y with the captioning prompt (index building). Rows of one
        token count go through the model together, `max_batch_size` at a time: a forward pass per
        row (as this did first) left a GPU idle between launches and cost a handle call each
        (benchmarks/index_fill.py)."""
        out: list[np.ndarray | None] = [None] * len(features)
        for rows in same_shape_batches([np.shape(f) for f in features], self.max_batch_size):
            s_v = torch.from_numpy(np.stack([np.asarray(features[i], dtype=np.float32) for i in rows]))
            for i, embedding in zip(rows, embed_features(self.model, s_v, [self.caption_prompt] * len(rows), self.device)):
                out[i] = embedding
        return out


@serve.deployment(max_ongoing_requests=128)
class TextEncoder(Answers):
    def __init__(self, model: str, label_cache_size: int = 4096):
        self.model = load_model(resolve_model_dir(model)).eval()
        self.labels: OrderedDict[str, np.ndarray] = OrderedDict()
        self.label_cache_size = label_cache_size

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def embed(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.model.embed_texts(texts).numpy())

    async def embed_many(self, texts: list[str], cache: bool = False) -> np.ndarray:
        """(K, E) for texts; with cache=True (candidate labels) repeated texts skip the encoder."""
        import asyncio

        if not cache:
            return np.stack(await asyncio.gather(*(self.embed(t) for t in texts)))
        missing = [t for t in dict.fromkeys(texts) if t not in self.labels]
        for text, embedding in zip(missing, await asyncio.gather(*(self.embed(t) for t in missing))):
            self.labels[text] = embedding
        for text in texts:
            self.labels.move_to_end(text)
        result = np.stack([self.labels[t] for t in texts])
        while len(self.labels) > self.label_cache_size:
            self.labels.popitem(last=False)
        return result


# One replica per shard: a shard is state, and every add to it must be seen by its searches. An
# index of N shards is N of these deployments (pipelines.serve.index_deployment_name), each
# holding the ids that hash to it (ops/index_shards.py).
@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class RetrievalIndex(Answers):
    def __init__(self, width: int, store: str | None = None, model: str | None = None, shard: int = 0,
                 shards: int = 1):
        """width: the model's embedding width. store: a directory whose log (ops/index_log.py) keeps
        the items across restarts (this shard's part of it: ops.index_shards.shard_store); None: in
        memory only, and a restarted replica starts empty. model: the serving model's
        prediction_fingerprint: a store of another model's is refused. shard, shards: which part
        of a split index this replica holds."""
        if store:
            store = str(shard_store(store, shard, shards))
        self.log = IndexLog(store, model) if store else None
        self.index = self.log.replay(width) if self.log else VectorIndex(width)
        # ids of cache items deleted over HTTP: add_many (an ingress adding its --index-cache, at
        # every start and on every new replica) skips them; the store keeps them across restarts
        self.removed: set[str] = set(self.log.removed) if self.log else set()
        if self.log and self.log.skipped:
            notice(logging.WARNING, "index store %s: %d unreadable line(s) skipped (a write cut short?)",
                   store, self.log.skipped)

    def add(self, item_id: str, embedding: np.ndarray, meta: dict) -> dict:
        embedding = self.index.vector(embedding)  # checked before it is logged
        if self.log:
            self.log.add(item_id, embedding, meta)  # on disk before it is answered
        self.index.add(item_id, embedding, meta)
        self.removed.discard(item_id)  # an explicit add brings a deleted cache item back
        return {"id": item_id, **meta}

    def add_many(self, items: list[tuple[str, np.ndarray, dict]]) -> int:
        """Adds (id, embedding, meta) items in one call and, with a store, one synced write. An
        ingress sends only what `missing` named, but two replicas starting together both predict
        them, and an item may be deleted while they do: so items the index already holds
        unchanged are skipped (the second replica writes nothing) and deleted ones are not added
        back. -> how many were new or changed."""
        fresh = [(item_id, self.index.vector(embedding), meta) for item_id, embedding, meta in items
                 if item_id not in self.removed]
        fresh = [item for item in fresh if not self.index.holds(*item)]
        if self.log:
            self.log.add_many(fresh)
        for item in fresh:
            self.index.add(*item)
        return len(fresh)

    def missing(self, items: list[tuple[str, dict]]) -> list[str]:
        """Of (id, meta) items an ingress would add from a cache: the ids to predict and add, those
        not held with that meta and not deleted over HTTP. Within one application the model is
        fixed (and a store is this model's), so an item held with the same meta holds the same Ŝ_Y."""
        return [item_id for item_id, meta in items
                if item_id not in self.removed and self.index.meta.get(item_id) != meta]

    def drop_stale_cache_items(self, listed: dict[str, list[str]]) -> list[str]:
        """{cache: the ids of its items an ingress found in it} for the caches the application serves:
        drops the items of a cache (meta "source") that it no longer lists, or whose cache is no
        longer served, so the index mirrors its caches as they are now (a cache rebuilt with fewer
        samples, an `--index-cache` dropped, ids of an older scheme in a kept store). Items added
        over HTTP have no source and are never touched. No tombstones: a served cache that lists
        the item again brings it back. -> the dropped ids."""
        wanted = {source: set(ids) for source, ids in listed.items()}
        stale = [item_id for item_id, meta in self.index.meta.items()
                 if "source" in meta and item_id not in wanted.get(meta["source"], ())]
        if self.log:
            self.log.delete_many(stale)
        for item_id in stale:
            self.index.delete(item_id)
        return stale

    def page(self, offset: int = 0, limit: int | None = None, prefix: str | None = None) -> tuple[list[dict], int]:
        """(items offset .. offset + limit in insertion order (all by default), how many there are),
        of the items whose id starts with `prefix` when given."""
        return self.index.list(offset, limit, prefix), self.index.count(prefix)

    def delete(self, item_id: str) -> bool:
        if item_id not in self.index.rows:
            return False
        from_cache = "source" in self.index.meta[item_id]  # an --index-cache item: would be added again
        if self.log:
            self.log.delete(item_id, tombstone=from_cache)
        if from_cache:
            self.removed.add(item_id)
        return self.index.delete(item_id)

    def search(self, query: np.ndarray, k: int, prefix: str | None = None) -> list[dict]:
        return self.index.search(query, k, prefix)


@serve.deployment(max_ongoing_requests=64)
class TextDecoder(Answers):
    """The Y-decoder: Ŝ_Y -> text, dynamically batched (requests with the same beam width decode together)."""

    def __init__(self, model: str):
        from model.y_decoder_export import load_y_decoder

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.decoder = load_y_decoder(resolve_model_dir(model)).eval().to(self.device)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def decode(self, requests: list[tuple[np.ndarray, int]]) -> list[str]:
        """[(unit embedding (E,), beams)] -> texts."""
        out: list[str | None] = [None] * len(requests)
        by_beams: dict[int, list[int]] = {}
        for i, (_, beams) in enumerate(requests):
            by_beams.setdefault(beams, []).append(i)
        for beams, rows in by_beams.items():
            embeddings = torch.from_numpy(np.stack([requests[i][0] for i in rows]).astype(np.float32))
            for i, text in zip(rows, self.decoder.generate(embeddings, num_beams=beams)):
                out[i] = text
        return out
