"""Build a VL-JEPA model from a config: with weights (from_pretrained) or as a meta-device skeleton.

Both paths construct the same Hugging Face classes; `build_skeleton` needs only the checkpoints'
configs (see `model.hub_configs`), so the paper-scale model can be inspected without downloads.
"""

from __future__ import annotations

import torch

from model.config import VLJepaConfig
from model.hub_configs import architecture_config
from model.predictor import Predictor
from model.tokenize import load_tokenizer
from model.vljepa import VLJepa
from model.x_encoder import XEncoder
from model.y_encoder import YEncoder


def build_vljepa(config: VLJepaConfig, *, dtype: torch.dtype | None = None) -> VLJepa:
    """Load every component from its checkpoint (hub id or local directory)."""
    kwargs = {"dtype": dtype} if dtype is not None else {}
    x_encoder = XEncoder.from_pretrained(config.x_encoder.checkpoint, **kwargs)
    predictor = Predictor.from_pretrained(
        config.predictor.checkpoint,
        layer_start=config.predictor.layer_start,
        num_layers=config.predictor.num_layers,
        vision_dim=x_encoder.hidden_size,
        embed_dim=config.embed_dim,
        **kwargs,
    )
    y_encoder = YEncoder.from_pretrained(config.y_encoder.checkpoint, embed_dim=config.embed_dim, **kwargs)
    return VLJepa(
        config, x_encoder, predictor, y_encoder,
        query_tokenizer=load_tokenizer(config.predictor.checkpoint),
        target_tokenizer=load_tokenizer(config.y_encoder.checkpoint),
    )


def build_skeleton(config: VLJepaConfig) -> VLJepa:
    """The same architecture on the meta device: shapes and parameter counts, no weights."""
    x_config = architecture_config(config.x_encoder.checkpoint)
    llm_config = architecture_config(config.predictor.checkpoint)
    text_config = architecture_config(config.y_encoder.checkpoint)
    with torch.device("meta"):
        x_encoder = XEncoder.from_config(x_config)
        predictor = Predictor.from_config(
            llm_config, num_layers=config.predictor.num_layers,
            vision_dim=x_config.hidden_size, embed_dim=config.embed_dim,
        )
        y_encoder = YEncoder.from_config(text_config, embed_dim=config.embed_dim)
        return VLJepa(config, x_encoder, predictor, y_encoder)
