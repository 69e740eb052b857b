"""Selective decoding of a long video (paper §2, §4.5): windows -> one Ŝ_Y per window, each a
single forward pass (no autoregression) -> decode points -> text only at those points.

Ray-free, so `vljepa stream`, the Serve stream endpoint and the §4.5 benchmark share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from model.vljepa import VLJepa
from model.y_decoder import YDecoder
from ops.data.frames import frames_to_input
from ops.decode.segmentation import (
    Segment,
    online_segments,
    segment_embeddings,
    segment_event,
    uniform_segments,
    ward_segments,
)
from ops.decode.stream_windows import WindowSpec, iter_windows

STRATEGIES = ("adaptive", "uniform", "online")


@dataclass(frozen=True, kw_only=True)
class DecodePlan:
    strategy: str = "adaptive"
    segments: int | None = None  # adaptive / uniform: decodes per stream; None: one per seconds_per_decode
    seconds_per_decode: float = 4.0
    pooled: bool = True  # decode the segment's average embedding (else its midpoint's)
    threshold: float = 0.1  # online: local variance that marks a change of meaning
    online_window: int = 4  # online: steps in the local window
    smooth: int = 1  # adaptive: moving-average width (steps) the clustering sees; 1 = none

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.segments is not None and self.segments < 1:
            raise ValueError("--segments must be >= 1")
        if self.smooth < 1:
            raise ValueError("--smooth must be >= 1")
        if not 0 < self.seconds_per_decode < math.inf:
            raise ValueError("--seconds-per-decode must be positive and finite")
        if not 0 <= self.threshold < math.inf:
            raise ValueError("--threshold must be >= 0 and finite")
        if self.online_window < 2:  # the variance of one embedding is always 0: nothing would ever be decoded
            raise ValueError("--online-window must be >= 2")


@torch.no_grad()
def embed_frames(model: VLJepa, frames: np.ndarray, query: str) -> np.ndarray:
    """(W, T, S, S, 3) uint8 windows -> (W, E) unit Ŝ_Y, one forward pass per batch of windows."""
    device = model.logit_scale.device
    inputs = torch.stack([frames_to_input(w) for w in frames]).to(device)
    return model.embed_visual(model.encode_visual(inputs), [query] * len(frames)).cpu().numpy()


def embed_stream(model: VLJepa, data: bytes, spec: WindowSpec, query: str) -> tuple[np.ndarray, np.ndarray]:
    """A video's bytes -> (window centre times (W,), embeddings (W, E))."""
    times, embeddings = [], []
    for chunk_times, frames in iter_windows(data, spec):
        times.append(chunk_times)
        embeddings.append(embed_frames(model, frames, query))
    return np.concatenate(times), np.concatenate(embeddings)


def plan_segments(embeddings: np.ndarray, times: np.ndarray, spec: WindowSpec, plan: DecodePlan) -> list[Segment]:
    if plan.strategy == "online":
        return online_segments(embeddings, plan.online_window, plan.threshold)
    duration = float(times[-1] - times[0]) + spec.window_s
    count = plan.segments or max(1, round(duration / plan.seconds_per_decode))
    if plan.strategy == "uniform":
        return uniform_segments(len(embeddings), count)
    return ward_segments(embeddings, count, plan.smooth)


def decode_events(decoder: YDecoder, embeddings: np.ndarray, times: np.ndarray, segments: list[Segment],
                  pooled: bool, num_beams: int = 1) -> list[dict]:
    chosen = torch.from_numpy(segment_embeddings(embeddings, segments, pooled)).float()
    texts = decoder.generate(chosen, num_beams=num_beams)
    return [segment_event(times, s, text) for s, text in zip(segments, texts)]


def stream_events(model: VLJepa, decoder: YDecoder, data: bytes, spec: WindowSpec, plan: DecodePlan,
                  query: str, num_beams: int = 1) -> dict:
    """{"windows": W, "events": [{"time", "text", "start", "end"}, ...]} for one video."""
    times, embeddings = embed_stream(model, data, spec, query)
    segments = plan_segments(embeddings, times, spec, plan)
    return {"windows": len(times), "events": decode_events(decoder, embeddings, times, segments, plan.pooled, num_beams)}
