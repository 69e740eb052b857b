"""Decode media bytes into sampled, resized, centre-cropped uint8 frames.

Images are read with PIL and videos with decord straight from bytes. Output stays uint8
(T, S, S, 3): four times smaller than floats on the way to the GPU actors, which normalise on
the device (see ops.cache.featurize).
"""

from __future__ import annotations

import io
import warnings

import av
import numpy as np
import torch
from PIL import Image

from ops.data.preprocess import resize_and_crop, uint8_frames_to_input, uniform_frame_indices
from ops.data.samples import (
    CORRUPT_IMAGE,
    CORRUPT_VIDEO,
    EMPTY_VIDEO,
    IMAGE_TOO_LARGE,
    VIDEO_TOO_LARGE,
    VIDEO_TOO_SHORT,
    SampleError,
)

# Beyond this a "photo" is a decompression bomb or a corrupt header, not training data.
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_SIDE = 16_384
# Video frames: 8K UHD is the largest any camera or platform makes. Beyond it, a few KB of H.264
# (a 12 KB file holds 16 frames of 4096x4096) would decode into gigabytes.
MAX_VIDEO_FRAME_PIXELS = 7680 * 4320
MAX_VIDEO_SIDE = 8192
# Full-resolution RGB frames decoded at once while sampling a clip. Shrinking a group to the model's
# size peaks at several times its uint8 bytes (float copies): 16 frames of 4K in one read peak at
# 2.4 GB, so large frames are read a few at a time instead (docs/benchmarks.md: 0.75 GB).
DECODE_BUDGET_BYTES = 64 * 2**20


def decode_image(data: bytes, size: int) -> tuple[np.ndarray, np.ndarray]:
    """-> frames (1, size, size, 3) uint8, frame_times [0.0]."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE or min(width, height) < 1:
                raise SampleError(IMAGE_TOO_LARGE, f"image is {width}x{height}")
            pixels = np.asarray(image.convert("RGB"))
    except SampleError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SampleError(IMAGE_TOO_LARGE, str(exc)) from None
    except Exception as exc:  # PIL raises many types for damaged files
        raise SampleError(CORRUPT_IMAGE, f"{type(exc).__name__}: {exc}") from None
    return frames_at_size(pixels[None], size), np.zeros(1, dtype=np.float32)


def decode_video(data: bytes, size: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """-> frames (num_frames, size, size, 3) uint8 sampled uniformly, their times in seconds."""
    reader, available, fps = open_video(data)
    try:
        indices = uniform_frame_indices(available, num_frames)
    except ValueError as exc:
        raise SampleError(VIDEO_TOO_SHORT, str(exc)) from None
    return read_frames_at_size(reader, indices, size), (indices / fps).astype(np.float32)


def open_video(data: bytes):
    """-> (decord VideoReader, frame count, frames per second), from the container's header and
    first frame; SampleError empty_video / corrupt_video for bytes that are not a readable video."""
    import decord  # imported here: decord is only needed where videos are decoded

    if not data:
        raise SampleError(EMPTY_VIDEO, "the video is empty")
    try:
        reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
        return reader, len(reader), reader.get_avg_fps() or 1.0
    except Exception as exc:  # decord raises its own error types for every kind of damage
        raise SampleError(CORRUPT_VIDEO, _first_line(exc)) from None


def read_frames_at_size(reader, indices, size: int) -> np.ndarray:
    """The frames at sorted `indices` of a decord VideoReader, (T, size, size, 3) uint8, holding at
    most DECODE_BUDGET_BYTES of full-resolution frames at once (and refusing absurd frame sizes).

    The first frame is read alone: decord reports no resolution before it decodes. The rest follow
    in one read when they fit the budget (every clip at training resolutions), else in groups;
    reads in increasing order continue the decoder without seeking, so splitting costs no decoding.
    """
    try:
        first = read_frames(reader, indices[:1])
        height, width = first.shape[1:3]
        if max(height, width) > MAX_VIDEO_SIDE or height * width > MAX_VIDEO_FRAME_PIXELS:
            raise SampleError(VIDEO_TOO_LARGE, f"video frames are {width}x{height}")
        per_read = max(1, DECODE_BUDGET_BYTES // first.nbytes)
        parts = [frames_at_size(first, size)]
        for start in range(1, len(indices), per_read):
            parts.append(frames_at_size(read_frames(reader, indices[start : start + per_read]), size))
    except SampleError:
        raise
    except Exception as exc:  # decord raises its own error types for every kind of damage
        raise SampleError(CORRUPT_VIDEO, _first_line(exc)) from None
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def read_frames(reader, indices) -> np.ndarray:
    """The frames at `indices` of a decord VideoReader, (T, H, W, 3) uint8: a view of decord's own
    buffer through DLPack (it lives as long as the array). `asnumpy()` copies every pixel once
    more; dropping that copy raised the Ray decode stage's clips/s by a fifth (docs/benchmarks.md)."""
    from torch.utils.dlpack import from_dlpack

    batch = reader.get_batch([int(i) for i in indices])
    if not hasattr(batch, "to_dlpack"):  # a process that set another decord bridge (torch, ...)
        return np.asarray(batch)
    return from_dlpack(batch.to_dlpack()).numpy()


def to_uint8(frames) -> np.ndarray:
    """(T, 3, S, S) float in [0, 1] -> (T, S, S, 3) uint8."""
    return (frames.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def frames_at_size(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8: shorter side to size, centre crop.

    Media already at the size on its shorter side (common: video2dataset and img2dataset resize
    when they download) needs only the crop, done here on the uint8 pixels. The float round trip
    would give the same bytes (x / 255 * 255 rounds back to x) and took 37% of a 16-frame 256px
    clip's decode time (docs/benchmarks.md)."""
    height, width = frames.shape[1:3]
    if min(height, width) == size:
        top, left = (height - size) // 2, (width - size) // 2
        return np.ascontiguousarray(frames[:, top : top + size, left : left + size])
    return to_uint8(resize_and_crop(frames, size))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


# Media bytes from a request -> frames for the model, with the reasons a request is refused.
#
# The kind is sniffed from the bytes, never from a client-supplied name or type. Decoding reuses the
# cache pipeline's decoders, so serving sees exactly the frames training saw.
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
    """-> (kind, frames (T, S, S, 3) uint8). Raises UnsupportedMedia or ops.data.samples.SampleError."""
    kind = sniff(data)
    if kind == "image":
        return kind, decode_image(data, image_size)[0]
    return kind, decode_video(data, image_size, num_frames)[0]


def frames_to_input(frames: np.ndarray) -> torch.Tensor:
    """(T, S, S, 3) uint8 -> (T, 3, S, S) float32 normalised, the x-encoder's input."""
    return uint8_frames_to_input(torch.from_numpy(np.array(frames, copy=True)))


# Encode frames into real media files: H.264 MP4 through PyAV (libx264), JPEG / PNG through PIL.
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
