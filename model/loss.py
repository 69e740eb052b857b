"""Bi-directional InfoNCE between predicted and target embeddings (paper §2, "Training Objective").

Design choices (after open_clip's `ClipLoss`):
- Both sides are L2-normalised; logits are `logit_scale * Ŝ_Y · S_Yᵀ`, with the scale passed in
  (the model owns it as a learnable parameter, see `VLJepa.logit_scale`).
- Under data parallelism every rank gathers all ranks' features *with* gradients
  (`torch.distributed.nn.functional.all_gather`) and computes the loss of the whole global batch.
  Each rank then holds the same loss, and the all-gather backward sums the gradient for its local
  rows from every rank; DDP's gradient averaging turns that back into exactly the single-process
  gradient of the concatenated batch.
- `gather_features` runs only when a process group with world_size > 1 is initialised.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_features(
    predicted: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (B, E) features from every rank, in rank order, keeping the autograd graph."""
    from torch.distributed.nn.functional import all_gather  # imported lazily: needs a backend

    return torch.cat(all_gather(predicted), dim=0), torch.cat(all_gather(target), dim=0)


def distributed_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class InfoNCELoss(nn.Module):
    def forward(
        self, predicted: torch.Tensor, target: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        """predicted Ŝ_Y (B, E), target S_Y (B, E), logit_scale () -> scalar loss."""
        predicted = F.normalize(predicted.float(), dim=-1)
        target = F.normalize(target.float(), dim=-1)
        if distributed_world_size() > 1:
            predicted, target = gather_features(predicted, target)
        logits = logit_scale * predicted @ target.t()  # (B_global, B_global)
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
