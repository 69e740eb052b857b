"""Frame sampling and V-JEPA 2 preprocessing: uniform indices, resize, centre crop, normalise."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# V-JEPA 2 normalises with the ImageNet statistics.
VJEPA2_MEAN = (0.485, 0.456, 0.406)
VJEPA2_STD = (0.229, 0.224, 0.225)


def uniform_frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """num_frames indices spread evenly over the clip, each the centre of its segment.

    Raises ValueError when the clip holds fewer frames than asked: repeating frames would present
    a still as motion, so such a clip is reported as bad instead.
    """
    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    if num_available < num_frames:
        raise ValueError(f"video has {num_available} frames, fewer than the {num_frames} asked")
    segment = num_available / num_frames
    return np.minimum((np.arange(num_frames) * segment + segment / 2).astype(np.int64), num_available - 1)


def resize_and_crop(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) float in [0, 1]: shorter side to size, centre crop."""
    video = torch.from_numpy(np.array(frames, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)  # in place: 4K is 100 MB a frame
    height, width = video.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        video = F.interpolate(video, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return video[:, :, top : top + size, left : left + size].clamp_(0.0, 1.0)


def normalise(video: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1], on any device -> V-JEPA 2's normalised input.

    The one place this happens: caching (on the encoder's device), serving and the tests all call
    it, so cached and served features cannot drift apart."""
    mean = torch.tensor(VJEPA2_MEAN, dtype=video.dtype, device=video.device).view(3, 1, 1)
    std = torch.tensor(VJEPA2_STD, dtype=video.dtype, device=video.device).view(3, 1, 1)
    return (video - mean) / std


def uint8_frames_to_input(frames: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 frames (as decoded) -> (..., 3, H, W) float normalised."""
    return normalise(frames.movedim(-1, -3).float().div_(255.0))


def preprocess_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) float32, ready for the x-encoder."""
    return normalise(resize_and_crop(frames, size))
