"""Parameter counts per component: total, trainable, frozen."""

from __future__ import annotations

from torch import nn

from model.vljepa import VLJepa


def count(module: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


def component_counts(model: VLJepa) -> dict[str, dict[str, int]]:
    counts = {
        "x_encoder": count(model.x_encoder),
        "predictor": count(model.predictor),
        "y_encoder": count(model.y_encoder),
    }
    counts["total"] = count(model)  # includes the logit scale
    return counts
