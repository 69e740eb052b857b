"""A long annotated video stream for selective decoding (paper §4.5), from the sample scenes.

Events, each a held-out scene (never seen in training) lasting a few seconds, play back to back
in one H.264 video; the annotations are the ground truth (start, end, caption) of each event,
in the spirit of EgoExo4D's atomic action annotations. Events vary in length, so a fixed decoding
rate either wastes decodes on long events or misses short ones: what adaptive decoding exploits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ops.data.frames import encode_h264
from ops.data.sample_data import split_scenes
from ops.data.scenes import render_clip


@dataclass(frozen=True, kw_only=True)
class LongStreamConfig:
    seed: int = 0
    num_events: int = 24
    min_seconds: float = 2.0
    max_seconds: float = 9.0
    fps: int = 8
    frame_size: int = 96
    split: str = "eval"  # eval: held-out combinations; train: seen ones
    # how event lengths are drawn between min and max: "uniform" in seconds, or "loguniform"
    # (uniform in log-seconds: many short events and a few long ones, the uneven pace of real
    # activity, where bursts of short actions sit between long stretches of one activity)
    durations: str = "uniform"

    def __post_init__(self) -> None:
        if self.durations not in ("uniform", "loguniform"):
            raise ValueError(f"durations must be 'uniform' or 'loguniform', not {self.durations!r}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}")

    def event_seconds(self, rng: np.random.Generator) -> float:
        if self.durations == "loguniform":
            return float(np.exp(rng.uniform(np.log(self.min_seconds), np.log(self.max_seconds))))
        return float(rng.uniform(self.min_seconds, self.max_seconds))


def make_long_stream(config: LongStreamConfig) -> tuple[bytes, list[dict]]:
    """-> (H.264 MP4 bytes, [{"start", "end", "time", "caption"}, ...] in seconds)."""
    rng = np.random.default_rng([config.seed, 7])
    train, held_out = split_scenes()
    scenes = held_out if config.split == "eval" else train
    clips, annotations, clock, previous = [], [], 0.0, None
    for _ in range(config.num_events):
        choices = [s for s in scenes if s != previous]  # consecutive events always differ
        scene = choices[rng.integers(len(choices))]
        frames = int(round(config.event_seconds(rng) * config.fps))
        clips.append(render_clip(scene, frames, config.frame_size, rng))
        start, end = clock, clock + frames / config.fps
        annotations.append({"start": round(start, 3), "end": round(end, 3), "time": round((start + end) / 2, 3),
                            "caption": scene.caption})
        clock, previous = end, scene
    return encode_h264(np.concatenate(clips), fps=config.fps), annotations
