"""Optimizer parameter groups (paper §3.1).

    predictor   trainable predictor parameters (+ the logit scale) at the base lr
    y_encoder   all y-encoder parameters at base lr x y_encoder_lr_multiplier (0.05 in the paper)
    x-encoder   absent: it is frozen and never handed to the optimizer

Each group is split once more so that biases, norm gains and the logit scale get no weight decay
(open_clip's convention: decaying them only hurts).
"""

from __future__ import annotations

import torch
from torch import nn

from model.vljepa import VLJepa


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or "norm" in name or name.endswith("logit_scale")


def _split(named: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float, name: str) -> list[dict]:
    decay = [p for n, p in named if p.requires_grad and not _no_decay(n, p)]
    no_decay = [p for n, p in named if p.requires_grad and _no_decay(n, p)]
    return [
        {"name": name, "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": f"{name}_no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]


def param_groups(model: VLJepa, base_lr: float, weight_decay: float = 0.05) -> list[dict]:
    predictor = [(f"predictor.{n}", p) for n, p in model.predictor.named_parameters()]
    predictor.append(("logit_scale", model.logit_scale))
    y_encoder = [(f"y_encoder.{n}", p) for n, p in model.y_encoder.named_parameters()]
    y_lr = base_lr * model.config.y_encoder_lr_multiplier
    groups = _split(predictor, base_lr, weight_decay, "predictor") + _split(y_encoder, y_lr, weight_decay, "y_encoder")
    return [g for g in groups if g["params"]]


def build_optimizer(model: VLJepa, base_lr: float, weight_decay: float = 0.05,
                    betas: tuple[float, float] = (0.9, 0.98)) -> torch.optim.AdamW:
    # betas (0.9, 0.98): the usual choice for contrastive training at large batch (CLIP, open_clip)
    return torch.optim.AdamW(param_groups(model, base_lr, weight_decay), lr=base_lr, betas=betas)


def apply_update(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                 grad_clip: float) -> torch.Tensor:
    """One update as every trainer here runs it (and the training benchmark's bare loop, so the
    comparison is of the same step): clip the global gradient norm over the optimizer's
    parameters, step, advance the schedule, clear the gradients. Returns the pre-clip norm."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm
