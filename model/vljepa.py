"""VL-JEPA: X-Encoder, Predictor and Y-Encoder over one shared embedding space (paper §2).

    frames --XEncoder--> S_V --Predictor(+query)--> Ŝ_Y   ~   S_Y <--YEncoder-- target text

The module returns embeddings; the InfoNCE loss lives in `model.loss` and the tasks that compare
embeddings (classification, VQA, retrieval) in `model.tasks`, so the same model serves training,
evaluation and serving unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from model.config import VLJepaConfig
from model.predictor import Predictor
from model.tokenize import tokenize
from model.x_encoder import XEncoder
from model.y_encoder import YEncoder

# Texts per forward pass of `embed_texts`.
TEXT_BATCH = 256


class VLJepa(nn.Module):
    def __init__(
        self,
        config: VLJepaConfig,
        x_encoder: XEncoder,
        predictor: Predictor,
        y_encoder: YEncoder,
        query_tokenizer: PreTrainedTokenizerBase | None = None,
        target_tokenizer: PreTrainedTokenizerBase | None = None,
    ):
        super().__init__()
        self.config = config
        self.x_encoder = x_encoder
        self.predictor = predictor
        self.y_encoder = y_encoder
        # CLIP's parameterisation: the log of the logit scale (1 / temperature) is learned.
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / config.init_temperature)),
            requires_grad=config.learnable_temperature,
        )
        self.query_tokenizer = query_tokenizer
        self.target_tokenizer = target_tokenizer

    # -- the three maps of the paper -------------------------------------------------------
    def encode_visual(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, C, H, W) or (B, C, H, W) -> S_V (B, N, D_v); frozen, no grad."""
        return self.x_encoder(frames)

    def predict(
        self,
        s_v: torch.Tensor,
        query_ids: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """S_V (B, N, D_v) and an optional query (B, L) -> Ŝ_Y (B, E), not normalised."""
        return self.predictor(s_v, query_ids, query_mask, visual_mask)

    def encode_target(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Target tokens (B, L) -> S_Y (B, E), not normalised."""
        return self.y_encoder(input_ids, attention_mask)

    def forward(
        self,
        s_v: torch.Tensor,
        target_ids: torch.Tensor,
        target_mask: torch.Tensor,
        query_ids: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training forward: (Ŝ_Y, S_Y), each (B, E). Features are cached, so it starts at S_V."""
        return (self.predict(s_v, query_ids, query_mask, visual_mask),
                self.encode_target(target_ids, target_mask))

    def scale(self) -> torch.Tensor:
        """The logit scale exp(logit_scale), clamped so logits stay bounded."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    # -- text conveniences for inference ----------------------------------------------------
    def tokenize_queries(self, queries: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return tokenize(self._require(self.query_tokenizer, "query"), queries,
                        self.config.predictor.max_query_tokens)

    def tokenize_targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return tokenize(self._require(self.target_tokenizer, "target"), texts,
                        self.config.y_encoder.max_tokens)

    @torch.no_grad()
    def embed_texts(self, texts: list[str], batch_size: int = TEXT_BATCH) -> torch.Tensor:
        """Candidate / target texts -> L2-normalised S_Y (K, E), on the model's device.

        Encoded `batch_size` at a time, longest first: a batch pads to its longest text, so texts of
        like length batched together waste little, and a long list (every label of an evaluation,
        an MLflow batch prediction) never becomes one forward pass over all of it. The rows come
        back in the order given; a list of at most `batch_size` is one batch, as before."""
        device = self.logit_scale.device
        if not texts:
            return torch.zeros(0, self.config.embed_dim, device=device)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = torch.empty(len(texts), self.config.embed_dim, device=device)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = self.tokenize_targets([texts[i] for i in chunk])
            out[chunk] = F.normalize(self.encode_target(ids.to(device), mask.to(device)).float(), dim=-1)
        return out

    @torch.no_grad()
    def embed_visual(self, s_v: torch.Tensor, queries: list[str] | None = None,
                     visual_mask: torch.Tensor | None = None) -> torch.Tensor:
        """S_V (B, N, D_v) and optional per-sample queries -> L2-normalised Ŝ_Y (B, E).
        An empty query string means "no query" (query-free, as in pretraining)."""
        query_ids = query_mask = None
        if queries is not None and any(queries):
            query_ids, query_mask = self.tokenize_queries(queries)
            query_ids, query_mask = query_ids.to(s_v.device), query_mask.to(s_v.device)
            query_mask = query_mask * torch.tensor([bool(q) for q in queries], device=s_v.device)[:, None]
        return F.normalize(self.predict(s_v, query_ids, query_mask, visual_mask).float(), dim=-1)

    @staticmethod
    def _require(tokenizer, side: str) -> PreTrainedTokenizerBase:
        if tokenizer is None:
            raise ValueError(f"this model was built without its {side} tokenizer (meta-device build?)")
        return tokenizer
