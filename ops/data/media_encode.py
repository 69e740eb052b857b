"""Encode frames into real media files: H.264 MP4 through PyAV (libx264), JPEG / PNG through PIL."""

from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image


# Deterministic output (the sample data and the test fixtures must be the same bytes every run):
# one thread, fixed quality, and no macroblock-tree rate control. With mbtree on, libx264 (core 165,
# the one PyAV ships) encoded the same 96x96 frames into different bitstreams depending on the
# process's heap layout: 2 of ~700 sample clips changed between two `make demo` runs, and a
# reproducer gave several bitstreams for one clip in 6 of 16 heap layouts, none with mbtree off.
H264_OPTIONS = {"crf": "20", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}


def encode_h264(frames: np.ndarray, fps: int = 8) -> bytes:
    """(T, H, W, 3) uint8 -> an H.264 MP4 (yuv420p, so H and W must be even)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = H264_OPTIONS
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
