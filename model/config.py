"""Typed configs for VL-JEPA's components (paper §3.1).

Each component names the Hugging Face checkpoint it is initialised from (a hub id or a local
directory; both go through the same `from_pretrained` path) plus the few choices the paper makes
on top of it. Presets that fill these in live in `model.presets`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class XEncoderConfig:
    """Frozen V-JEPA 2 video encoder: frames -> S_V."""

    checkpoint: str
    image_size: int = 256  # frames are resized and centre-cropped to image_size^2
    num_frames: int = 16  # frames sampled per video clip by default (1 for images)


@dataclass(kw_only=True)
class PredictorConfig:
    """Llama layers that map <S_V, query> to the predicted target embedding."""

    checkpoint: str  # a Llama checkpoint; its tokenizer and token embeddings embed the query
    layer_start: int = 8  # checkpoint layer `layer_start + i` becomes predictor layer i
    num_layers: int = 8
    max_query_tokens: int = 512


@dataclass(kw_only=True)
class YEncoderConfig:
    """Text encoder that embeds the target text: Y -> S_Y."""

    checkpoint: str
    max_tokens: int = 512


@dataclass(kw_only=True)
class VLJepaConfig:
    name: str
    x_encoder: XEncoderConfig
    predictor: PredictorConfig
    y_encoder: YEncoderConfig
    embed_dim: int = 1536  # the shared space where the loss is computed
    # The y-encoder starts pretrained while the predictor's early predictions are poor; a small
    # multiplier keeps those early gradients from wrecking the text space (paper §3.1).
    y_encoder_lr_multiplier: float = 0.05
    # InfoNCE temperature: a learnable logit scale (CLIP style) starting at 1/init_temperature,
    # clamped at max_logit_scale so the logits cannot blow up.
    init_temperature: float = 0.07
    learnable_temperature: bool = True
    max_logit_scale: float = 100.0
    extra: dict = field(default_factory=dict)  # free-form provenance (e.g. which preset built it)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VLJepaConfig":
        data = dict(data)
        return cls(
            x_encoder=XEncoderConfig(**data.pop("x_encoder")),
            predictor=PredictorConfig(**data.pop("predictor")),
            y_encoder=YEncoderConfig(**data.pop("y_encoder")),
            **data,
        )

    def fingerprint(self) -> str:
        """A short stable hash of the whole config."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
