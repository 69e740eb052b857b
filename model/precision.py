"""The compute precision of a forward pass, one rule for training and serving: bf16 autocast on a
GPU (weights, optimizer state and outputs stay float32), plain float32 on a CPU, where bf16
matmuls are slower than float32 ones. Measured on an H100 (docs/benchmarks.md): a paper-size
training step x4.2 faster than float32 with under half the memory."""

from __future__ import annotations

import torch


def device_autocast(device: torch.device, bf16: bool = True) -> torch.autocast:
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)
