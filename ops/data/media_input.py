"""Media bytes from a request -> frames for the model, with the reasons a request is refused.

The kind is sniffed from the bytes, never from a client-supplied name or type. Decoding reuses the
cache pipeline's decoders, so serving sees exactly the frames training saw.
"""

from __future__ import annotations

import numpy as np
import torch

from ops.data.frames import decode_image, decode_video
from ops.data.preprocess import uint8_frames_to_input


class UnsupportedMedia(ValueError):
    """The bytes are neither an image nor a video this system reads."""


def sniff(data: bytes) -> str:
    """'image' or 'video' from the file signature."""
    if not data:
        raise UnsupportedMedia("the media is empty (0 bytes)")
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n") or (
            head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3") or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    raise UnsupportedMedia("not an image (JPEG, PNG, WebP) or a video (MP4, WebM, MKV, AVI)")


def decode_media(data: bytes, image_size: int, num_frames: int) -> tuple[str, np.ndarray]:
    """-> (kind, frames (T, S, S, 3) uint8). Raises UnsupportedMedia or ops.data.errors.SampleError."""
    kind = sniff(data)
    if kind == "image":
        return kind, decode_image(data, image_size)[0]
    return kind, decode_video(data, image_size, num_frames)[0]


def frames_to_input(frames: np.ndarray) -> torch.Tensor:
    """(T, S, S, 3) uint8 -> (T, 3, S, S) float32 normalised, the x-encoder's input."""
    return uint8_frames_to_input(torch.from_numpy(np.array(frames, copy=True)))
