"""Predictor: <S_V, X_Q> -> Ŝ_Y, built from a slice of a Llama checkpoint (paper §3.1).

Design choices:
- Keeps a contiguous slice of the checkpoint's decoder layers (layer `layer_start + i` becomes
  layer i), plus its token embeddings (frozen) and final norm. The paper keeps Llama-3.2-1B's
  last 8 layers (8..15): 490M trainable parameters.
- Bidirectional: `config.is_causal = False` makes transformers build a bidirectional mask, so
  visual and query tokens attend to each other both ways.
- Sequence = [projected visual tokens ; query token embeddings], queries right-padded. PAD keys
  are masked in attention and PAD positions are left out of the mean pool, so padding changes
  nothing. Rotary positions count real tokens only, so visual padding (images next to clips in
  one batch) moves no real token either.
- Ŝ_Y = head(masked_mean(last hidden state)); `vision_proj` maps D_v to the LLM width.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel

from model.checkpoint_loading import loading
from model.pooling import masked_mean


def slice_llama_layers(llm: LlamaModel, layer_start: int, num_layers: int) -> LlamaModel:
    """Keep layers [layer_start, layer_start + num_layers) of `llm`, renumbered from 0."""
    total = len(llm.layers)
    if layer_start < 0 or num_layers < 1 or layer_start + num_layers > total:
        raise ValueError(
            f"cannot keep layers {layer_start}..{layer_start + num_layers - 1} of a checkpoint "
            f"with {total} layers"
        )
    kept = list(llm.layers)[layer_start : layer_start + num_layers]
    for index, layer in enumerate(kept):
        layer.self_attn.layer_idx = index  # the KV-cache slot; kept consistent with the position
    llm.layers = nn.ModuleList(kept)
    llm.config.num_hidden_layers = num_layers
    if getattr(llm.config, "layer_types", None):
        llm.config.layer_types = llm.config.layer_types[layer_start : layer_start + num_layers]
    return llm


class Predictor(nn.Module):
    def __init__(self, llm: LlamaModel, vision_dim: int, embed_dim: int):
        super().__init__()
        llm.config.is_causal = False
        llm.config.use_cache = False
        self.llm = llm
        self.llm.embed_tokens.requires_grad_(False)  # query token embeddings stay Llama's
        width = llm.config.hidden_size
        self.vision_proj = nn.Linear(vision_dim, width)
        self.head = nn.Linear(width, embed_dim)

    @classmethod
    def from_pretrained(
        cls, checkpoint: str, *, layer_start: int, num_layers: int, vision_dim: int, embed_dim: int,
        **kwargs,
    ) -> "Predictor":
        with loading(checkpoint):
            llm = LlamaModel.from_pretrained(checkpoint, **kwargs)
        return cls(slice_llama_layers(llm, layer_start, num_layers), vision_dim, embed_dim)

    @classmethod
    def from_config(
        cls, config: LlamaConfig, *, num_layers: int, vision_dim: int, embed_dim: int
    ) -> "Predictor":
        config = LlamaConfig.from_dict(config.to_dict())
        config.num_hidden_layers = num_layers
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:num_layers]
        return cls(LlamaModel(config), vision_dim, embed_dim)

    @property
    def width(self) -> int:
        return self.llm.config.hidden_size

    def encode_sequence(
        self,
        s_v: torch.Tensor,
        query_ids: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last hidden state over [visual ; query] positions (B, N + L, H) and its mask (B, N + L).

        visual_mask (B, N) marks real visual tokens when a batch pads S_V to a common N (images
        hold fewer tokens than clips); padded visual tokens are masked exactly like query PADs.
        """
        visual = self.vision_proj(s_v)  # (B, N, H)
        if visual_mask is None:
            mask = torch.ones(visual.shape[:2], dtype=torch.long, device=visual.device)  # (B, N)
        else:
            mask = visual_mask.to(device=visual.device, dtype=torch.long)
        tokens = visual
        if query_ids is not None and query_ids.shape[1] > 0:
            if query_mask is None:
                query_mask = torch.ones_like(query_ids)
            query = self.llm.embed_tokens(query_ids).to(visual.dtype)  # (B, L, H)
            tokens = torch.cat([visual, query], dim=1)  # (B, N + L, H)
            mask = torch.cat([mask, query_mask.to(mask.dtype)], dim=1)
        # Rotary positions count real tokens only, so padding (visual or query) moves no real token.
        positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        hidden = self.llm(inputs_embeds=tokens, attention_mask=mask, position_ids=positions).last_hidden_state
        return hidden, mask

    def forward(
        self,
        s_v: torch.Tensor,
        query_ids: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """s_v (B, N, D_v); query_ids / query_mask (B, L), right-padded, or None -> Ŝ_Y (B, E)."""
        hidden, mask = self.encode_sequence(s_v, query_ids, query_mask, visual_mask)
        return self.head(masked_mean(hidden, mask))  # (B, E)
