"""Y-Encoder: target text -> S_Y (paper §3.1).

Any Hugging Face text encoder (EmbeddingGemma-300M for the paper), masked mean pooling over its
last hidden state, then a linear head into the shared space.

The head starts as an isometry (orthonormal columns, zero bias): cosine similarities of the
pretrained encoder carry over exactly into the shared space, so a pretrained y-encoder is a
meaningful target from step 0 instead of a random projection of one.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from model.pooling import masked_mean


# Encoders whose constructor takes add_pooling_layer (a [CLS] pooler the masked mean never uses).
POOLER_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "mpnet"}


class YEncoder(nn.Module):
    def __init__(self, text_model: PreTrainedModel, embed_dim: int):
        super().__init__()
        if getattr(text_model, "pooler", None) is not None:
            # BERT-style [CLS] pooler: unused by the masked mean, and a trainable parameter without
            # gradients breaks DDP's reduction. Dropping it also keeps it out of the optimizer.
            text_model.pooler = None
        self.text_model = text_model
        self.head = nn.Linear(text_model.config.hidden_size, embed_dim)
        init_isometry_(self.head)

    @classmethod
    def from_pretrained(cls, checkpoint: str, *, embed_dim: int, **kwargs) -> "YEncoder":
        if AutoConfig.from_pretrained(checkpoint).model_type in POOLER_MODEL_TYPES:
            kwargs.setdefault("add_pooling_layer", False)  # never used; exported models carry none
        return cls(AutoModel.from_pretrained(checkpoint, **kwargs), embed_dim)

    @classmethod
    def from_config(cls, config: PretrainedConfig, *, embed_dim: int) -> "YEncoder":
        return cls(AutoModel.from_config(config), embed_dim)

    @property
    def hidden_size(self) -> int:
        return self.text_model.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids / attention_mask (B, L) -> S_Y (B, E)."""
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(masked_mean(hidden, attention_mask))


def init_isometry_(linear: nn.Linear) -> None:
    """Orthonormal columns (out >= in) so that <Wx, Wy> = <x, y>; bias zero."""
    if linear.weight.device.type == "meta":
        return
    with torch.no_grad():
        nn.init.orthogonal_(linear.weight)
        if linear.bias is not None:
            linear.bias.zero_()



