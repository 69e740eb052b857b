"""The model-side Ray Serve deployments of the inference graph.

    VisualPredictor   x-encoder + predictor: frames (+ query) -> Ŝ_Y, dynamically batched
    TextEncoder       y-encoder: texts -> S_Y, dynamically batched, LRU cache for label texts

(The retrieval index, which loads no model, is pipelines/retrieval/deployment.py.)

Each loads the exported model once in `__init__` (one GPU per visual replica when present), from
the source it is given (a directory or an MLflow URI), resolved on its own node.
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict

import numpy as np
import torch
from ray import serve

from model.export import load_model, read_manifest
from model.tasks import embed_clips
from ops.data.frames import frames_to_input
from ops.train.collate import same_shape_batches
from pipelines.models.source import resolve_model_dir
from pipelines.serve.metrics import LabelCacheMetrics


class Answers:
    """`ready()` for the ingress's /readyz: it answers once the replica has loaded its model (or its index)."""

    async def ready(self) -> bool:
        return True


# max_ongoing_requests >= max_batch_size, or Serve never lets a batch fill up.
@serve.deployment(max_ongoing_requests=32)
class VisualPredictor(Answers):
    def __init__(self, model: str, max_batch_size: int = 16):
        model_dir = resolve_model_dir(model)  # here, on the replica's own node (pipelines.models.source)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(model_dir).eval().to(self.device)
        self.caption_prompt = read_manifest(model_dir)["metadata"].get("caption_prompt", "")
        self.predict.set_max_batch_size(max_batch_size)  # 1 turns dynamic batching off

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


@serve.deployment(max_ongoing_requests=128)
class TextEncoder(Answers):
    def __init__(self, model: str, label_cache_size: int = 4096):
        self.model = load_model(resolve_model_dir(model)).eval()
        self.labels: OrderedDict[str, np.ndarray] = OrderedDict()
        self.label_cache_size = label_cache_size
        self.metrics = LabelCacheMetrics()

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def embed(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.model.embed_texts(texts).numpy())

    async def embed_many(self, texts: list[str], cache: bool = False) -> np.ndarray:
        """(K, E) for texts; with cache=True (candidate labels) repeated texts skip the encoder."""
        import asyncio

        if not cache:
            return np.stack(await asyncio.gather(*(self.embed(t) for t in texts)))
        missing = [t for t in dict.fromkeys(texts) if t not in self.labels]
        self.metrics.looked_up(hits=len(texts) - len(missing), misses=len(missing))
        for text, embedding in zip(missing, await asyncio.gather(*(self.embed(t) for t in missing))):
            self.labels[text] = embedding
        for text in texts:
            self.labels.move_to_end(text)
        result = np.stack([self.labels[t] for t in texts])
        while len(self.labels) > self.label_cache_size:
            self.labels.popitem(last=False)
        return result


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


# Start-up notices of a Serve replica that the operator should see where they watch the server.
#
# In the throughput-optimized mode `vljepa serve` runs (pipelines/cluster/ray_runtime.py), Serve writes a
# replica's log records to its file through a 1000-record buffer, flushed only when full or on an
# error, and redirects the replica's stdout and stderr into that buffer. So "index cache: 912 videos
# added" or "index: 864 items dropped" reached no console and, for a quiet replica, not even its log
# file. A notice is logged as usual, the buffer flushed, and, where Serve took stderr over, the line
# also written to the process's real stderr, which Ray forwards to the driver's console as
# `(ServeReplica:APP:DEPLOYMENT pid=...) ...`. In Ray's default mode the logger writes to stderr
# itself, so the line is not written twice.
SERVE_LOGGER = "ray.serve"


def notice(level: int, message: str, *args) -> None:
    logger = logging.getLogger(SERVE_LOGGER)
    logger.log(level, message, *args)
    for handler in logger.handlers:
        handler.flush()
    if logger.isEnabledFor(level) and not logs_to_stderr(logger):
        # written, not print()ed: Serve replaces print in the replica with one that logs its arguments
        sys.__stderr__.write(f"{logging.getLevelName(level)} {message % args}\n")
        sys.__stderr__.flush()


def logs_to_stderr(logger: logging.Logger) -> bool:
    """Whether Serve gave its logger a stream handler (its default mode), which already reaches the
    console. (Whether sys.stderr was replaced cannot tell: Ray wraps it in every worker.)"""
    return any(type(handler) is logging.StreamHandler for handler in logger.handlers)
