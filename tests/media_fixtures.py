"""Real media for tests: H.264 clips, JPEG/PNG images, and every kind of damaged input."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from ops.data.frames import encode_h264, encode_image
from ops.data.scenes import Scene, render_clip, render_image
from ops.data.shards import ShardWriter


def clip_bytes(num_frames: int = 16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_h264(render_clip(Scene("ball", "red", "moves left"), num_frames, 64, rng))


def image_bytes(fmt: str = "jpeg", seed: int = 0) -> bytes:
    return encode_image(render_image(Scene("cube", "blue"), 64, np.random.default_rng(seed)), fmt)


def huge_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG whose header claims absurd dimensions (a decompression bomb's calling card)."""
    png = bytearray(image_bytes("png"))
    ihdr = png[12:29]  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    png[12:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(png)


def wide_video_bytes(width: int = 8_256) -> bytes:
    """A real H.264 video of frames wider than any camera makes: a few KB that would decode into
    hundreds of MB a frame at bomb sizes (the same class, small enough to build in a test)."""
    return encode_h264(np.zeros((16, 16, width, 3), dtype=np.uint8))


GOOD_AND_BAD = {
    # key: (members, expected status or error reason)
    "goodvideo": ({"mp4": clip_bytes(), "txt": b"a red ball moves left"}, "ok"),
    "goodimage": ({"jpg": image_bytes("jpeg"), "txt": b"a blue cube"}, "ok"),
    "goodpng": ({"png": image_bytes("png"), "txt": b"a blue cube"}, "ok"),
    "goodvqa": ({"mp4": clip_bytes(seed=1), "json": json.dumps(
        {"query": "Which way?", "answer": "left", "candidates": ["left", "right"]}).encode()}, "ok"),
    "corruptimage": ({"jpg": b"\xff\xd8\xff\xe0not really a jpeg", "txt": b"x"}, "corrupt_image"),
    "truncatedimage": ({"jpg": image_bytes("jpeg")[:200], "txt": b"x"}, "corrupt_image"),
    "hugeimage": ({"png": huge_png_header(), "txt": b"x"}, "image_too_large"),
    "emptyvideo": ({"mp4": b"", "txt": b"x"}, "empty_video"),
    "corruptvideo": ({"mp4": b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 300, "txt": b"x"}, "corrupt_video"),
    "truncatedvideo": ({"mp4": clip_bytes()[:700], "txt": b"x"}, "corrupt_video"),
    "widevideo": ({"mp4": wide_video_bytes(), "txt": b"x"}, "video_too_large"),
    "shortvideo": ({"mp4": clip_bytes(num_frames=3), "txt": b"a red ball"}, "video_too_short"),
    "nocaption": ({"mp4": clip_bytes(seed=2)}, "missing_text"),
    "notutf8": ({"jpg": image_bytes("jpeg"), "txt": b"caf\xe9 \xff"}, "bad_text_encoding"),
    "nomedia": ({"txt": b"a caption without media"}, "missing_media"),
}


def write_shard(path, samples: dict) -> None:
    with ShardWriter(str(path)) as writer:
        for key, (members, _) in samples.items():
            writer.write(key, members)


def truncate_tar(path, keep_fraction: float) -> int:
    """Cut a tar about `keep_fraction` of the way in, inside a member's data: a cut that fell in the
    end-of-archive padding (which moves as the media's encoded sizes do) would leave a whole tar.
    Returns the bytes kept."""
    import tarfile

    data = path.read_bytes()
    with tarfile.open(path) as tar:
        spans = [(m.offset_data, m.offset_data + m.size) for m in tar.getmembers() if m.size > 1]
    cut = int(len(data) * keep_fraction)
    if not any(start < cut < end for start, end in spans):
        start, end = next(((s, e) for s, e in spans if s >= cut), spans[-1])
        cut = (start + end) // 2
    path.write_bytes(data[:cut])
    return cut
