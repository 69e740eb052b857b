"""Y-Encoder: target text -> S_Y (paper §3.1).

Any Hugging Face text encoder (EmbeddingGemma-300M for the paper), masked mean pooling over its
last hidden state, then a linear head into the shared space.

The head starts as an isometry (orthonormal columns, zero bias): cosine similarities of the
pretrained encoder carry over exactly into the shared space, so a pretrained y-encoder is a
meaningful target from step 0 instead of a random projection of one.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from model.checkpoint_loading import loading
from model.pooling import masked_mean

# Encoders whose constructor takes add_pooling_layer (a [CLS] pooler the masked mean never uses).
POOLER_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "mpnet"}
TRANSFORMERS_LOADING_LOGGER = "transformers.modeling_utils"
logger = logging.getLogger(__name__)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextlib.contextmanager
def quiet_logger(name: str):
    """Only errors from logger `name` inside the block. A filter, not setLevel: transformers reads
    its loading logger's level to decide whether to run (and print) a tensor-parallel plan check."""
    quieted = logging.getLogger(name)
    quieted.addFilter(_errors_only)
    try:
        yield
    finally:
        quieted.removeFilter(_errors_only)


def warn_unloaded(checkpoint: str, info: dict, expected_unexpected: tuple[str, ...]) -> list[str]:
    """Warn about checkpoint keys that did not load as they should (missing, mismatched, or
    unexpected beyond the prefixes we drop on purpose); returns those keys."""
    problems = [f"missing {k}" for k in info.get("missing_keys", ())]
    problems += [f"mismatched {k[0] if isinstance(k, tuple) else k}" for k in info.get("mismatched_keys", ())]
    problems += [f"unexpected {k}" for k in info.get("unexpected_keys", ()) if not k.startswith(expected_unexpected)]
    if problems:
        logger.warning("y-encoder %s: %d weight(s) did not load as expected: %s", checkpoint, len(problems),
                       ", ".join(sorted(problems)))
    return problems


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
        with loading(checkpoint):
            if AutoConfig.from_pretrained(checkpoint).model_type not in POOLER_MODEL_TYPES:
                return cls(AutoModel.from_pretrained(checkpoint, **kwargs), embed_dim)
            kwargs.setdefault("add_pooling_layer", False)  # never used; exported models carry none
            # The checkpoint's pooler weights are then "unexpected", and transformers prints a warning
            # table for them at every load (each training worker, Serve replica and CLI call). Its
            # report is replaced by our own, which names anything else that did not load.
            with quiet_logger(TRANSFORMERS_LOADING_LOGGER):
                text_model, info = AutoModel.from_pretrained(checkpoint, output_loading_info=True, **kwargs)
        warn_unloaded(checkpoint, info, expected_unexpected=("pooler.",))
        return cls(text_model, embed_dim)

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



