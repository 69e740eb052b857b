"""Encode frames into real media files: H.264 MP4 through PyAV (libx264), JPEG / PNG through PIL."""

from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image


def encode_h264(frames: np.ndarray, fps: int = 8) -> bytes:
    """(T, H, W, 3) uint8 -> an H.264 MP4 (yuv420p, so H and W must be even)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # deterministic output: one thread, fixed quality
        stream.codec_context.options = {"crf": "20", "preset": "veryfast", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def encode_image(pixels: np.ndarray, fmt: str = "jpeg") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt.upper(), **({"quality": 92} if fmt == "jpeg" else {}))
    return buffer.getvalue()
