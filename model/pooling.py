"""Masked mean pooling: the average over non-PAD positions (paper §3.1)."""

import torch


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hidden (B, L, D), mask (B, L) of 1 for real tokens and 0 for PAD -> (B, D)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    total = (hidden * weights).sum(dim=1)  # (B, D)
    count = weights.sum(dim=1).clamp_min(1.0)  # (B, 1); a row of all PAD pools to zeros
    return total / count
