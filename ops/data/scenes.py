"""Procedural scenes for the embedded sample dataset: a coloured shape moving over a background.

The caption states exactly what is visible (which shape, which colour, which way it moves), so a
model that learns anything shows it in zero-shot classification and retrieval. Everything is
deterministic given a numpy Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 205, 30),
}
SHAPES = ("ball", "cube", "triangle")
MOTIONS: dict[str, tuple[float, float]] = {  # (dx, dy) in units of the travel distance
    "moves left": (-1.0, 0.0),
    "moves right": (1.0, 0.0),
    "moves up": (0.0, -1.0),
    "moves down": (0.0, 1.0),
}


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    motion: str | None = None  # None: a still image

    @property
    def caption(self) -> str:
        subject = f"a {self.colour} {self.shape}"
        return subject if self.motion is None else f"{subject} {self.motion}"

    @property
    def label(self) -> str:
        """The class name used for zero-shot classification."""
        return self.caption


def all_scenes(with_motion: bool = True) -> list[Scene]:
    motions = list(MOTIONS) if with_motion else [None]
    return [Scene(s, c, m) for s in SHAPES for c in COLOURS for m in motions]


def _draw(canvas: np.ndarray, shape: str, colour: tuple[int, int, int], cx: float, cy: float, r: float) -> None:
    h, w, _ = canvas.shape
    yy, xx = np.mgrid[0:h, 0:w]
    if shape == "ball":
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    elif shape == "cube":
        inside = (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    elif shape == "triangle":  # apex up
        top, bottom = cy - r, cy + r * 0.8
        half_width = (yy - top) / (bottom - top) * r
        inside = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half_width)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    canvas[inside] = colour


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    tone = rng.integers(90, 160)
    noise = rng.integers(-12, 13, size=(size, size, 1))
    return np.clip(tone + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)


def render_clip(scene: Scene, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(num_frames, size, size, 3) uint8: the shape travels across about half the frame."""
    if scene.motion is None:
        raise ValueError("a still scene is an image: use render_image")
    dx, dy = MOTIONS[scene.motion]
    radius = size * rng.uniform(0.10, 0.14)
    travel = size * 0.45
    start_x = size / 2 - dx * travel / 2 + rng.uniform(-0.08, 0.08) * size
    start_y = size / 2 - dy * travel / 2 + rng.uniform(-0.08, 0.08) * size
    background = _background(size, rng)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        progress = t / max(num_frames - 1, 1)
        frame = background.copy()
        _draw(frame, scene.shape, COLOURS[scene.colour], start_x + dx * travel * progress,
              start_y + dy * travel * progress, radius)
        frames[t] = frame
    return frames


def render_image(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8: the shape somewhere near the centre."""
    frame = _background(size, rng)
    cx, cy = size * rng.uniform(0.3, 0.7), size * rng.uniform(0.3, 0.7)
    _draw(frame, scene.shape, COLOURS[scene.colour], cx, cy, size * rng.uniform(0.12, 0.2))
    return frame
