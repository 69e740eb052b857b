"""Zero-shot evaluation in the shared space (paper §4.1-4.2), over cached features.

- classification: the label set is every distinct caption of the split's captioning rows; a row
  is right when its own caption ranks first (top-1) or among the first five (top-5);
- text-to-video retrieval: each distinct caption queries all captioned videos; R@k counts a hit
  when a video with that caption is among the first k;
- discriminative VQA: the nearest of a row's own candidate answers to its question-conditioned
  prediction.
Chance levels are computed from the same data (1 / labels, relevant / videos, 1 / candidates).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

from model.tasks import embed_candidates, rank
from model.vljepa import VLJepa
from ops.cache.feature_cache import FeatureCache
from ops.cache.parquet import group_tables, table_rows
from ops.train.collate import pad_visual, row_features


def table_chunks(cache_url: str, max_samples: int | None = None) -> Iterator[pa.Table]:
    """The cache's rows (up to `max_samples`), a row group at a time, as Arrow tables."""
    cache = FeatureCache(cache_url)
    seen = 0
    for path in cache.shard_files():
        with cache.fs.open(path, "rb") as handle:
            for table in group_tables(handle):
                if max_samples is not None:
                    table = table.slice(0, max_samples - seen)
                seen += table.num_rows
                yield table
                if max_samples is not None and seen >= max_samples:
                    return
    if not seen:
        raise ValueError(f"no cached samples under {cache_url} (is it a feature cache with a manifest.json?)")


def row_chunks(cache_url: str, max_samples: int | None = None) -> Iterator[list[dict]]:
    """The cache's rows (up to `max_samples`), a row group at a time, S_V as numpy views of it."""
    for table in table_chunks(cache_url, max_samples):
        yield table_rows(table)


def load_rows(cache_url: str, max_samples: int | None = None) -> list[dict]:
    """The cache's rows (up to `max_samples`), S_V as numpy views of what was read: the features
    held once, at their stored dtype (ops/cache/parquet.py), read a row group at a time."""
    return [row for rows in row_chunks(cache_url, max_samples) for row in rows]


@torch.no_grad()
def predict(model: VLJepa, rows: list[dict], queries: list[str], batch_size: int = 64) -> torch.Tensor:
    """Normalised Ŝ_Y (len(rows), E) for rows' cached S_V, each with its query ("" = none)."""
    device = model.logit_scale.device
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        s_v, visual_mask = pad_visual(row_features([r["s_v_shape"] for r in chunk], [r["s_v"] for r in chunk]))
        out.append(model.embed_visual(s_v.to(device), queries[start : start + batch_size], visual_mask.to(device)).cpu())
    return torch.cat(out)


def scored_kind(row: dict) -> str | None:
    """What a row is scored on: "caption" (classification and retrieval), "vqa" (its candidate
    answers), or None (neither)."""
    if row["task"] == "caption":
        return "caption"
    return "vqa" if row["task"] in ("vqa", "classification") and row["candidates"] else None


@dataclass
class Predictions:
    """The rows evaluation scores, without their S_V, each with Ŝ_Y under its own query (the
    captioning prompt, or its question). Fed rows a chunk at a time: each kind is predicted in
    batches of `batch_size` as they fill, the batches the whole list would make, so the numbers
    are the same whether the rows came at once or a row group at a time."""

    model: VLJepa
    caption_prompt: str
    batch_size: int = 64
    rows_seen: int = 0
    pending: dict[str, list[dict]] = field(default_factory=lambda: {"caption": [], "vqa": []})
    done: dict[str, list[dict]] = field(default_factory=lambda: {"caption": [], "vqa": []})

    def add(self, rows: list[dict]) -> None:
        self.rows_seen += len(rows)
        for row in rows:
            kind = scored_kind(row)
            if kind:
                self.pending[kind].append(row)
        for kind in self.pending:
            self.flush(kind, self.batch_size)

    def flush(self, kind: str, at_least: int = 1) -> None:
        while len(self.pending[kind]) >= at_least and self.pending[kind]:
            chunk, self.pending[kind] = self.pending[kind][: self.batch_size], self.pending[kind][self.batch_size :]
            queries = [self.caption_prompt if kind == "caption" else row["query"] for row in chunk]
            for row, prediction in zip(chunk, predict(self.model, chunk, queries, self.batch_size)):
                self.done[kind].append({**{k: v for k, v in row.items() if k != "s_v"}, "predicted": prediction})

    def finish(self) -> tuple[list[dict], list[dict]]:
        for kind in self.pending:
            self.flush(kind)
        return self.done["caption"], self.done["vqa"]


def evaluate(model: VLJepa, rows: list[dict], caption_prompt: str = "") -> dict:
    """The metrics over rows held in memory."""
    return evaluate_chunks(model, [rows], caption_prompt)


def evaluate_cache(model: VLJepa, cache_url: str, caption_prompt: str = "", max_samples: int | None = None,
                   progress: Callable[[int], object] | None = None) -> dict:
    """The metrics over a cache read a row group at a time: only the predictions are kept, ~E floats
    a row instead of its S_V (2 MiB a paper-size clip), so the cache's size does not matter.
    `progress` is called with each row group's row count once its rows are in."""
    return evaluate_chunks(model, row_chunks(cache_url, max_samples), caption_prompt, progress)


@torch.no_grad()
def evaluate_chunks(model: VLJepa, chunks: Iterable[list[dict]], caption_prompt: str = "",
                    progress: Callable[[int], object] | None = None) -> dict:
    model.eval()
    predictions = Predictions(model, caption_prompt)
    for rows in chunks:
        predictions.add(rows)
        if progress is not None:
            progress(len(rows))
    captioned, vqa = predictions.finish()
    result: dict = {"num_samples": predictions.rows_seen}
    if captioned:
        labels = sorted({r["target"] for r in captioned})
        label_index = {label: index for index, label in enumerate(labels)}
        predicted = torch.stack([r["predicted"] for r in captioned])
        label_embeddings = model.embed_texts(labels).cpu()
        truth = torch.tensor([label_index[r["target"]] for r in captioned])
        ranked = rank(predicted, label_embeddings).indices
        result["classification"] = {
            "top1": float((ranked[:, 0] == truth).float().mean()),
            "top5": float((ranked[:, :5] == truth[:, None]).any(dim=1).float().mean()),
            "chance_top1": 1.0 / len(labels), "num_labels": len(labels),
        }
        videos = [i for i, r in enumerate(captioned) if r["media_kind"] == "video"]
        if videos:
            result["retrieval"] = _retrieval(predicted[videos], [captioned[i]["target"] for i in videos],
                                             labels, label_embeddings)
    if vqa:
        result["vqa"] = vqa_accuracy(model, vqa)
    return result


def vqa_accuracy(model: VLJepa, vqa: list[dict]) -> dict:
    """Accuracy of picking, per row, the candidate answer nearest its prediction. Every distinct
    answer is encoded once, in batches (answer sets repeat across questions: "yes" / "no", colours,
    directions), where one forward pass per row cost 2000 passes of a few texts each for the
    in-training evaluation's rows (benchmarks/vqa_scoring.py)."""
    correct = []
    for row, options in zip(vqa, embed_candidates(model, [row["candidates"] for row in vqa])):
        best = row["candidates"][int((options.cpu() @ row["predicted"]).argmax())]
        correct.append(best.strip().lower() == row["target"].strip().lower())
    return {"accuracy": float(np.mean(correct)), "chance": float(np.mean([1.0 / len(r["candidates"]) for r in vqa]))}


def _retrieval(video_embeddings, video_captions, labels, label_embeddings) -> dict:
    queries = sorted(set(video_captions))
    label_index = {label: index for index, label in enumerate(labels)}
    query_embeddings = label_embeddings[[label_index[q] for q in queries]]
    ranked = rank(query_embeddings, video_embeddings).indices  # (Q, V)
    captions = np.array(video_captions)
    hits = {k: [] for k in (1, 5, 10)}
    for q, query in enumerate(queries):
        relevant = captions[ranked[q].numpy()] == query
        for k in hits:
            hits[k].append(bool(relevant[:k].any()))
    chance = float(np.mean([(captions == q).sum() / len(captions) for q in queries]))
    return {"r1": float(np.mean(hits[1])), "r5": float(np.mean(hits[5])), "r10": float(np.mean(hits[10])),
            "chance_r1": chance, "num_queries": len(queries), "num_videos": len(captions)}
