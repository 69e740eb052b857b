"""A live feed of frames -> the sliding windows `iter_windows` cuts from a recorded video.

Frames arrive one at a time at a known rate. A window of `window_s` seconds starts every
`stride_s` seconds and is emitted as soon as its last frame arrives, with `num_frames` frames
sampled uniformly inside it and its centre time: the same frames and times `iter_windows` gives
for a video of those frames (ops/decode/stream_windows.py), so a live stream and an upload of the same
frames are embedded alike. Only the frames of one window are held, however long the feed.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ops.data.preprocess import uniform_frame_indices
from ops.decode.stream_windows import WindowSpec, window_too_short

MAX_FPS = 240.0


class LiveWindows:
    def __init__(self, spec: WindowSpec, fps: float):
        if not 0 < fps <= MAX_FPS:  # NaN fails too
            raise ValueError(f"fps must be in (0, {MAX_FPS:g}] (got {fps})")
        self.spec, self.fps = spec, fps
        self.length = max(1, round(spec.window_s * fps))  # frames per window, as window_starts rounds
        self.stride = max(1, round(spec.stride_s * fps))
        if self.length < spec.num_frames:
            raise window_too_short(spec, self.length, fps, source="feed")
        self.sampled = uniform_frame_indices(self.length, spec.num_frames)  # offsets inside a window
        self.held: deque[np.ndarray] = deque(maxlen=self.length)  # the latest frames, (S, S, 3) uint8 each
        self.frames = 0  # frames received
        self.windows = 0  # windows emitted

    def push(self, frame: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """One (S, S, 3) uint8 frame -> the windows it completes: [(centre time, (T, S, S, 3))]."""
        self.held.append(frame)
        self.frames += 1
        start = self.frames - self.length  # of the window that would end with this frame
        if start < 0 or start % self.stride:
            return []
        return [self._window(start, [self.held[i] for i in self.sampled])]

    def finish(self) -> list[tuple[float, np.ndarray]]:
        """The feed ended. One shorter than a window is one window over all of it (as a short video
        is), when it has the frames a window samples; otherwise nothing more."""
        if self.windows or self.frames < self.spec.num_frames:
            return []
        offsets = uniform_frame_indices(self.frames, self.spec.num_frames)
        return [self._window(0, [self.held[i] for i in offsets], end=self.frames)]

    def _window(self, start: int, frames: list[np.ndarray], end: int | None = None) -> tuple[float, np.ndarray]:
        self.windows += 1
        end = start + self.length if end is None else end
        return float(np.float32((start + end) / 2 / self.fps)), np.stack(frames)
