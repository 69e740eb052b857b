"""A long video -> sliding windows of sampled frames, each with its centre time.

Each window of `window_s` seconds, every `stride_s` seconds, gets `num_frames` frames sampled
uniformly inside it (the training clips' sampling), resized and centre-cropped like training.
Frames are decoded in chunks of windows so memory stays bounded on long videos.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ops.data.frames import open_video, read_frames_at_size
from ops.data.preprocess import uniform_frame_indices
from ops.data.samples import TOO_MANY_WINDOWS, VIDEO_TOO_SHORT, WINDOW_TOO_SHORT, SampleError


@dataclass(frozen=True, kw_only=True)
class WindowSpec:
    window_s: float = 2.0
    stride_s: float = 0.5
    num_frames: int = 8
    image_size: int = 64

    def validate(self) -> None:
        if not all(0 < seconds < math.inf for seconds in (self.window_s, self.stride_s)):  # NaN fails too
            raise ValueError(f"--window and --stride must be positive, finite seconds (got {self.window_s}, {self.stride_s})")


def window_too_short(spec: WindowSpec, frames_per_window: int, fps: float, source: str = "video") -> SampleError:
    """A window holding fewer frames than the model samples, and the shortest window that would do."""
    shortest = math.ceil(spec.num_frames / fps * 100) / 100
    return SampleError(WINDOW_TOO_SHORT, f"a {spec.window_s:g} s window holds {frames_per_window} frames of this "
                                         f"{fps:g} fps {source}, fewer than the {spec.num_frames} a window needs: use "
                                         f"a window of at least {shortest:g} s")


def window_starts(num_available: int, fps: float, spec: WindowSpec) -> list[tuple[int, int]]:
    """[(first frame, one past the last frame)] of each window; a video shorter than one window
    is one window over all of it."""
    length = max(1, round(spec.window_s * fps))
    stride = max(1, round(spec.stride_s * fps))
    if num_available <= length:
        return [(0, num_available)]
    return [(start, start + length) for start in range(0, num_available - length + 1, stride)]


def iter_windows(data: bytes, spec: WindowSpec, chunk: int = 32,
                 max_windows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """-> (centre times (W,), frames (W, T, S, S, 3) uint8) per chunk of up to `chunk` windows.

    With `max_windows`, a video that gives more windows is refused from its header (frame count
    and rate), before a single frame is decoded.
    """
    reader, available, fps = open_video(data)
    windows = window_starts(available, fps, spec)
    if max_windows is not None and len(windows) > max_windows:
        raise SampleError(TOO_MANY_WINDOWS, f"the video gives {len(windows)} windows, more than the {max_windows} "
                                            "allowed: raise the stride or send a shorter video")
    if available < spec.num_frames:
        raise SampleError(VIDEO_TOO_SHORT, f"video has {available} frames, fewer than the {spec.num_frames} a window needs")
    if windows[0][1] - windows[0][0] < spec.num_frames:  # the video is long enough, the window is not
        raise window_too_short(spec, windows[0][1] - windows[0][0], fps)
    for first in range(0, len(windows), chunk):
        group = windows[first : first + chunk]
        indices = [start + uniform_frame_indices(end - start, spec.num_frames) for start, end in group]
        needed = np.unique(np.concatenate(indices))
        frames = read_frames_at_size(reader, needed, spec.image_size)  # each frame once, however many windows share it
        position = {int(f): i for i, f in enumerate(needed)}
        batch = np.stack([frames[[position[int(i)] for i in idx]] for idx in indices])
        times = np.array([(start + end) / 2 / fps for start, end in group], dtype=np.float32)
        yield times, batch
