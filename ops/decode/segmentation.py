"""Where to decode an embedding stream (paper §2 "Selective Decoding", §4.5).

Offline, the stream of T predicted embeddings is cut into N contiguous segments and decoded once
per segment at its midpoint, from the exact midpoint embedding or the segment's average:
  uniform    N equal segments: decoding at a fixed rate, all a streaming VLM can do;
  adaptive   agglomerative clustering with temporal connectivity and Ward linkage: segments of
             least within-segment variance, so decodes land where the meaning changes.
Online (a live stream, no look-ahead): decode when the local window's variance has risen above a
threshold (the meaning is changing) and settled again (the new meaning is stable).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    start: int  # first step
    end: int  # one past the last step

    @property
    def midpoint(self) -> int:
        return (self.start + self.end - 1) // 2


def uniform_segments(num_steps: int, num_segments: int) -> list[Segment]:
    num_segments = max(1, min(num_segments, num_steps))
    bounds = np.linspace(0, num_steps, num_segments + 1).round().astype(int)
    return [Segment(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def smooth_stream(embeddings: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` steps (shrinking at the ends); width 1 is the identity."""
    if width <= 1:
        return embeddings
    sums = np.cumsum(np.pad(embeddings, ((1, 0), (0, 0))), axis=0)
    steps, half = embeddings.shape[0], width // 2
    lo = np.clip(np.arange(steps) - half, 0, steps)
    hi = np.clip(np.arange(steps) - half + width, 0, steps)
    return (sums[hi] - sums[lo]) / (hi - lo)[:, None]


def ward_segments(embeddings: np.ndarray, num_segments: int, smooth: int = 1) -> list[Segment]:
    """(T, E) -> N contiguous segments by Ward clustering restricted to temporal neighbours.

    `smooth` > 1 clusters a moving average of the stream (the paper's "simple smoothing"), so a
    single noisy prediction does not become a segment of its own.
    """
    from scipy.sparse import diags
    from sklearn.cluster import AgglomerativeClustering

    steps = embeddings.shape[0]
    if num_segments >= steps:
        return [Segment(t, t + 1) for t in range(steps)]
    if num_segments <= 1:
        return [Segment(0, steps)]
    chain = diags([np.ones(steps - 1), np.ones(steps - 1)], [-1, 1], shape=(steps, steps))  # t ~ t +/- 1
    labels = AgglomerativeClustering(n_clusters=num_segments, linkage="ward",
                                     connectivity=chain).fit_predict(smooth_stream(np.asarray(embeddings, dtype=np.float64), smooth))
    cuts = [0] + [t for t in range(1, steps) if labels[t] != labels[t - 1]] + [steps]
    return [Segment(a, b) for a, b in zip(cuts[:-1], cuts[1:])]  # contiguous: connectivity is a chain


class OnlineSegmenter:
    """Decode points of a live stream, one embedding at a time (no look-ahead).

    The local variance is the mean squared distance of the last `window` embeddings to their mean.
    The first decode comes once a window is full; later ones each time the variance, having risen
    above `threshold`, falls back below it. Each decode covers the steps since the previous one, at
    most the window that ends there (the event is centred in it). `push` answers as each step
    arrives, so a live endpoint and the offline `online_segments` make the same decisions.
    """

    def __init__(self, window: int, threshold: float):
        self.window, self.threshold = window, threshold
        self.recent: deque[np.ndarray] = deque(maxlen=window)
        self.steps = 0
        self.last_decode: int | None = None  # the step of the latest decode
        self.changing = False

    def push(self, embedding: np.ndarray) -> Segment | None:
        """Step t's embedding -> the segment to decode now, if any."""
        t, self.steps = self.steps, self.steps + 1
        self.recent.append(embedding)
        if self.last_decode is None:
            return self._decode_at(t) if t + 1 >= self.window else None
        recent = np.stack(self.recent)
        variance = float(((recent - recent.mean(axis=0)) ** 2).sum(axis=1).mean())
        if variance > self.threshold:
            self.changing = True
        elif self.changing:
            self.changing = False
            return self._decode_at(t)
        return None

    def finish(self) -> Segment | None:
        """The stream ended: one shorter than a window still gets its one decode, at its last step."""
        return self._decode_at(self.steps - 1) if self.last_decode is None and self.steps else None

    def _decode_at(self, t: int) -> Segment:
        start = 0 if self.last_decode is None else self.last_decode + 1
        self.last_decode = t
        return Segment(max(start, t - self.window + 1), t + 1)


def online_segments(embeddings: np.ndarray, window: int, threshold: float) -> list[Segment]:
    """The decode points OnlineSegmenter picks over a whole recorded stream."""
    segmenter = OnlineSegmenter(window, threshold)
    segments = [segment for segment in map(segmenter.push, embeddings) if segment is not None]
    last = segmenter.finish()
    return segments + ([last] if last is not None else [])


def segment_event(times, segment: Segment, text: str) -> dict:
    """A decoded segment as the stream's event: its midpoint's time, its span, its text (seconds to
    the millisecond). `times`: the window centre times, indexed by step."""
    return {"time": round(float(times[segment.midpoint]), 3), "text": text,
            "start": round(float(times[segment.start]), 3), "end": round(float(times[segment.end - 1]), 3)}


def segment_embeddings(embeddings: np.ndarray, segments: list[Segment], pooled: bool) -> np.ndarray:
    """(N, E) unit embeddings to decode: each segment's midpoint, or its average (denoised)."""
    if pooled:
        chosen = np.stack([embeddings[s.start : s.end].mean(axis=0) for s in segments])
    else:
        chosen = np.stack([embeddings[s.midpoint] for s in segments])
    return chosen / np.maximum(np.linalg.norm(chosen, axis=1, keepdims=True), 1e-12)
