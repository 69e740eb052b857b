"""Tasks in the shared space, with no change to the architecture (paper §2, "Multi-tasking").

All of them compare L2-normalised embeddings by cosine similarity:
- open-vocabulary classification: nearest label embedding to Ŝ_Y (query = a captioning prompt);
- discriminative VQA: nearest candidate answer to the question-conditioned Ŝ_Y;
- text-to-video retrieval: videos ranked by the similarity of their captioning-prompt Ŝ_Y to the
  encoded text query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.precision import device_autocast
from model.vljepa import VLJepa


@dataclass(frozen=True)
class Ranking:
    indices: torch.Tensor  # (B, K) candidates, best first
    scores: torch.Tensor  # (B, K) cosine similarities, in the same order


def rank(queries: torch.Tensor, candidates: torch.Tensor) -> Ranking:
    """queries (B, E), candidates (K, E), both normalised -> candidates ranked per query."""
    scores = queries @ candidates.t()  # (B, K)
    ordered, indices = scores.sort(dim=-1, descending=True)
    return Ranking(indices=indices, scores=ordered)


def classify(model: VLJepa, s_v: torch.Tensor, labels: list[str], prompt: str | None = None) -> Ranking:
    """S_V (B, N, D_v) -> labels ranked per sample."""
    queries = None if prompt is None else [prompt] * s_v.shape[0]
    return rank(model.embed_visual(s_v, queries), model.embed_texts(labels))


def answer_vqa(model: VLJepa, s_v: torch.Tensor, questions: list[str], candidates: list[list[str]]) -> list[Ranking]:
    """One question and its own candidate answers per sample -> candidates ranked per sample."""
    predicted = model.embed_visual(s_v, questions)  # (B, E)
    return [rank(predicted[i : i + 1], options) for i, options in enumerate(embed_candidates(model, candidates))]


def embed_candidates(model: VLJepa, candidates: list[list[str]]) -> list[torch.Tensor]:
    """Each sample's candidate answers -> their S_Y (K_i, E). Every distinct answer is encoded once,
    in batches: answer sets repeat across questions ("yes" / "no", colours, directions)."""
    answers = list(dict.fromkeys(answer for options in candidates for answer in options))
    embedded = model.embed_texts(answers)
    index = {answer: i for i, answer in enumerate(answers)}
    return [embedded[[index[answer] for answer in options]] for options in candidates]


def retrieve(model: VLJepa, video_embeddings: torch.Tensor, text_queries: list[str]) -> Ranking:
    """Normalised Ŝ_Y of a video collection (V, E) and text queries -> videos ranked per query."""
    return rank(model.embed_texts(text_queries), video_embeddings)


def embed_features(model: VLJepa, s_v: torch.Tensor, queries: list[str], device: torch.device) -> np.ndarray:
    """S_V (B, N, D) and queries -> L2-normalised Ŝ_Y (B, E) float32, as a serving replica runs
    it: no autograd, bf16 on a GPU."""
    with torch.inference_mode(), device_autocast(device):
        return model.embed_visual(s_v.to(device), queries).float().cpu().numpy()


def embed_clips(model: VLJepa, frames: torch.Tensor, queries: list[str], device: torch.device) -> np.ndarray:
    """The visual replica's forward (the serving benchmark times this same call): frames
    (B, T, C, S, S) and queries -> L2-normalised Ŝ_Y (B, E) float32. No autograd; bf16 on a GPU."""
    with torch.inference_mode(), device_autocast(device):
        return embed_features(model, model.encode_visual(frames.to(device)), queries, device)
