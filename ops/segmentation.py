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


def online_segments(embeddings: np.ndarray, window: int, threshold: float) -> list[Segment]:
    """Decode points a live stream would pick, seeing one embedding at a time.

    The local variance is the mean squared distance of the last `window` embeddings to their mean.
    The first decode comes once a window is full; later ones each time the variance, having risen
    above `threshold`, falls back below it. Each decode covers the steps since the previous one.
    """
    steps = embeddings.shape[0]
    decode_at: list[int] = []
    changing = False
    for t in range(steps):
        recent = embeddings[max(0, t - window + 1) : t + 1]
        variance = float(((recent - recent.mean(axis=0)) ** 2).sum(axis=1).mean())
        if not decode_at:
            if t + 1 >= min(window, steps):
                decode_at.append(t)
        elif variance > threshold:
            changing = True
        elif changing:
            decode_at.append(t)
            changing = False
    starts = [0] + [d + 1 for d in decode_at[:-1]]
    # the decode at step d covers the window that ends there: centre the event in it
    return [Segment(max(s, d - window + 1), d + 1) for s, d in zip(starts, decode_at)]


def segment_embeddings(embeddings: np.ndarray, segments: list[Segment], pooled: bool) -> np.ndarray:
    """(N, E) unit embeddings to decode: each segment's midpoint, or its average (denoised)."""
    if pooled:
        chosen = np.stack([embeddings[s.start : s.end].mean(axis=0) for s in segments])
    else:
        chosen = np.stack([embeddings[s.midpoint] for s in segments])
    return chosen / np.maximum(np.linalg.norm(chosen, axis=1, keepdims=True), 1e-12)
