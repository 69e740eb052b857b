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

import numpy as np
import torch

from model.tasks import rank
from model.vljepa import VLJepa
from ops.cache_parquet import group_tables, table_rows
from ops.collate import pad_visual, row_features
from ops.feature_cache import FeatureCache


def load_rows(cache_url: str, max_samples: int | None = None) -> list[dict]:
    """The cache's rows (up to `max_samples`), S_V as numpy views of what was read: the features
    held once, at their stored dtype (ops/cache_parquet.py), read a row group at a time."""
    cache = FeatureCache(cache_url)
    rows: list[dict] = []
    for path in cache.shard_files():
        with cache.fs.open(path, "rb") as handle:
            for table in group_tables(handle):
                rows.extend(table_rows(table))
                if max_samples is not None and len(rows) >= max_samples:
                    return rows[:max_samples]
    if not rows:
        raise ValueError(f"no cached samples under {cache_url} (is it a feature cache with a manifest.json?)")
    return rows


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


def evaluate(model: VLJepa, rows: list[dict], caption_prompt: str = "") -> dict:
    model.eval()
    result: dict = {"num_samples": len(rows)}
    captioned = [r for r in rows if r["task"] == "caption"]
    if captioned:
        labels = sorted({r["target"] for r in captioned})
        predicted = predict(model, captioned, [caption_prompt] * len(captioned))
        label_embeddings = model.embed_texts(labels).cpu()
        truth = torch.tensor([labels.index(r["target"]) for r in captioned])
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
    vqa = [r for r in rows if r["task"] in ("vqa", "classification") and r["candidates"]]
    if vqa:
        predicted = predict(model, vqa, [r["query"] for r in vqa])
        correct = []
        for row, prediction in zip(vqa, predicted):
            options = model.embed_texts(row["candidates"]).cpu()
            best = row["candidates"][int((options @ prediction).argmax())]
            correct.append(best.strip().lower() == row["target"].strip().lower())
        result["vqa"] = {"accuracy": float(np.mean(correct)),
                         "chance": float(np.mean([1.0 / len(r["candidates"]) for r in vqa]))}
    return result


def _retrieval(video_embeddings, video_captions, labels, label_embeddings) -> dict:
    queries = sorted(set(video_captions))
    query_embeddings = label_embeddings[[labels.index(q) for q in queries]]
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
