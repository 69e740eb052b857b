"""X-Encoder: a frozen V-JEPA 2 ViT, frames -> S_V (paper §3.1).

Design choices:
- Wraps `transformers.VJEPA2Model` and runs it encoder-only (`get_vision_features`); the JEPA
  predictor that ships in the checkpoint is dropped after loading, so it costs no memory.
- Frozen for good: no parameter requires grad, the module stays in eval mode even when a parent
  calls `.train()`, and the forward runs under `torch.no_grad()`.
- Images are duplicated over the tubelet so that one architecture serves images and videos.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import VJEPA2Config, VJEPA2Model

from model.checkpoint_loading import loading


class _EncoderOnlyVJEPA2(VJEPA2Model):
    """VJEPA2Model that expects no JEPA-predictor weights: exported models carry the encoder only."""

    _keys_to_ignore_on_load_missing = [r"^predictor\."]


class XEncoder(nn.Module):
    def __init__(self, vjepa: VJEPA2Model):
        super().__init__()
        vjepa.predictor = None  # encoder-only: the JEPA predictor is never run
        self.vjepa = vjepa
        self.vjepa.requires_grad_(False)
        self.vjepa.eval()

    @classmethod
    def from_pretrained(cls, checkpoint: str, **kwargs) -> "XEncoder":
        with loading(checkpoint):
            return cls(_EncoderOnlyVJEPA2.from_pretrained(checkpoint, **kwargs))

    @classmethod
    def from_config(cls, config: VJEPA2Config) -> "XEncoder":
        return cls(VJEPA2Model(config))

    @property
    def config(self) -> VJEPA2Config:
        return self.vjepa.config

    @property
    def hidden_size(self) -> int:
        return self.vjepa.config.hidden_size

    @property
    def tubelet_size(self) -> int:
        return self.vjepa.config.tubelet_size

    def train(self, mode: bool = True) -> "XEncoder":
        return super().train(False)  # frozen: dropout / drop-path never switch on

    def num_tokens(self, num_frames: int, image_size: int) -> int:
        """N, the number of visual tokens for a clip of num_frames frames of image_size^2."""
        frames = max(num_frames, self.tubelet_size) // self.tubelet_size
        return frames * (image_size // self.vjepa.config.patch_size) ** 2

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, C, H, W) or an image batch (B, C, H, W), normalised -> S_V (B, N, D_v)."""
        if frames.ndim == 4:
            frames = frames.unsqueeze(1)  # (B, 1, C, H, W)
        if frames.shape[1] < self.tubelet_size:
            # a single image fills the tubelet by repetition (paper: "the same image is duplicated")
            frames = frames.repeat(1, self.tubelet_size // frames.shape[1] + 1, 1, 1, 1)
            frames = frames[:, : self.tubelet_size]
        return self.vjepa.get_vision_features(frames)
