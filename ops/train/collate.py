"""Cached rows -> model-ready tensors: S_V padded with a visual mask, tokenised targets and queries.

Runs inside the training workers' batch pipeline (`iter_torch_batches(collate_fn=...)`), so
tokenisation overlaps the previous step instead of blocking it.

Which rows carry a query (paper §3.2): none in query-free pretraining; in SFT a VQA or
classification row carries its own question, a captioning row the stage's captioning prompt, and
a replayed pretraining row none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from transformers import PreTrainedTokenizerBase

from model.tokenize import tokenize


def pad_visual(features: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(N_i, D)] -> S_V (B, max N, D) float32 and visual_mask (B, max N).

    Padded in numpy, then wrapped without a copy: this runs in Ray Data's prefetch thread, and a
    large torch op there (zeros, copy) would start a second OpenMP thread pool in the training
    process; with more pool threads than cores, libgomp stops spin-waiting and every parallel op
    of the training step pays a slow wake-up (measured: steps ~1.3x slower; docs/benchmarks.md)."""
    longest = max(f.shape[0] for f in features)
    dim = features[0].shape[1]
    s_v = np.zeros((len(features), longest, dim), dtype=np.float32)
    mask = np.zeros((len(features), longest), dtype=np.int64)
    for i, f in enumerate(features):
        s_v[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = 1
    return torch.from_numpy(s_v), torch.from_numpy(mask)


def row_features(shapes, flats) -> list[np.ndarray]:
    return [np.asarray(flat).reshape(tuple(int(x) for x in shape)) for shape, flat in zip(shapes, flats)]


def same_shape_batches(shapes: list[tuple], max_size: int) -> list[list[int]]:
    """Indices of inputs of one shape together (stacked without padding), at most `max_size` a batch."""
    by_shape: dict[tuple, list[int]] = {}
    for i, shape in enumerate(shapes):
        by_shape.setdefault(tuple(shape), []).append(i)
    return [rows[start : start + max_size] for rows in by_shape.values() for start in range(0, len(rows), max_size)]


def query_for(task: str, query: str, caption_prompt: str, replay: bool) -> str:
    if replay:
        return ""
    if task in ("vqa", "classification") and query:
        return query
    return caption_prompt


@dataclass
class Collate:
    target_tokenizer: PreTrainedTokenizerBase
    query_tokenizer: PreTrainedTokenizerBase
    max_target_tokens: int
    max_query_tokens: int
    use_query: bool
    caption_prompt: str = ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        s_v, visual_mask = pad_visual(row_features(batch["s_v_shape"], batch["s_v"]))
        target_ids, target_mask = tokenize(self.target_tokenizer, [str(t) for t in batch["target"]], self.max_target_tokens)
        out = {"s_v": s_v, "visual_mask": visual_mask, "target_ids": target_ids, "target_mask": target_mask}
        if self.use_query:
            replay = batch.get("replay", np.zeros(len(s_v), dtype=bool))
            queries = [query_for(str(t), str(q), self.caption_prompt, bool(r))
                       for t, q, r in zip(batch["task"], batch["query"], replay)]
            if any(queries):
                ids, mask = tokenize(self.query_tokenizer, [q or "" for q in queries], self.max_query_tokens)
                # a row without a query keeps no query token at all (not even [CLS] / BOS)
                keep = np.array([bool(q) for q in queries], dtype=np.int64)[:, None]
                mask = torch.from_numpy(mask.numpy() * keep)  # numpy: no torch op in this thread (see pad_visual)
                out["query_ids"], out["query_mask"] = ids, mask
        return out


# Select a training stage's rows from cached Arrow batches, zero-copy (no pandas, no per-row Python).
def selection_mask(table: pa.Table, media_kinds: list[str], tasks: list[str]) -> pa.ChunkedArray:
    """Whether each row's media kind and task are among those the stage trains on."""
    return pc.and_(pc.is_in(table["media_kind"], value_set=pa.array(media_kinds)),
                   pc.is_in(table["task"], value_set=pa.array(tasks)))


def select_rows(table: pa.Table, media_kinds: list[str], tasks: list[str], replay: bool) -> pa.Table:
    """Rows whose media kind and task the stage trains on, tagged with whether they are replayed."""
    selected = table.filter(selection_mask(table, media_kinds, tasks))
    return selected.append_column("replay", pa.array([replay] * selected.num_rows, type=pa.bool_()))
