"""Hard-negative text triplets of the sample dataset's scenes, built the way SugarCrepe++ builds its
own: p1 is a scene's caption ("a red ball moves left"), p2 says the same in other words ("the
sphere, coloured red, travels to the left"), and n is p1 with one thing replaced ("a blue ball moves
left"): little lexical overlap between the positives, a lot between p1 and the negative. Categories
name what the negative replaced: colour, shape or motion. Deterministic given the seed."""

from __future__ import annotations

import numpy as np

from ops.data.scenes import COLOURS, MOTIONS, SHAPES, Scene, all_scenes
from ops.evaluate.text_triplets import TextTriplet

SHAPE_WORDS = {"ball": ("sphere", "round ball"), "cube": ("box", "block"),
               "triangle": ("triangular shape", "three-sided shape")}
MOTION_WORDS = {
    "moves left": ("travels to the left", "is heading leftwards", "goes towards the left side"),
    "moves right": ("travels to the right", "is heading rightwards", "goes towards the right side"),
    "moves up": ("travels to the top", "is rising upwards", "goes up the frame"),
    "moves down": ("travels to the bottom", "is sinking downwards", "goes down the frame"),
}
# "{shape}" / "{colour}" / "{motion}": the paraphrase's words for them
STILL_TEMPLATES = ("the {shape}, coloured {colour}", "one {shape} that is {colour}", "a {colour}-coloured {shape}")
MOVING_TEMPLATES = ("the {shape}, coloured {colour}, {motion}", "one {shape} that is {colour} {motion}",
                    "a {colour}-coloured {shape} {motion}")


def paraphrase(scene: Scene, rng: np.random.Generator) -> str:
    words = {"shape": rng.choice(SHAPE_WORDS[scene.shape]), "colour": scene.colour}
    if scene.motion is None:
        return str(rng.choice(STILL_TEMPLATES)).format(**words)
    return str(rng.choice(MOVING_TEMPLATES)).format(**words, motion=rng.choice(MOTION_WORDS[scene.motion]))


def replaced(scene: Scene, category: str, rng: np.random.Generator) -> Scene:
    """The scene with its `category` attribute changed to another value."""
    options = {"colour": list(COLOURS), "shape": list(SHAPES), "motion": list(MOTIONS)}[category]
    other = rng.choice([value for value in options if value != getattr(scene, category)])
    return Scene(**{"shape": scene.shape, "colour": scene.colour, "motion": scene.motion, category: str(other)})


def sample_triplets(seed: int = 0) -> list[TextTriplet]:
    """One triplet per scene (stills and moving) and attribute a negative can replace: 168."""
    rng = np.random.default_rng(seed)
    triplets = []
    for scene in all_scenes(with_motion=False) + all_scenes():
        for category in ("colour", "shape") + (("motion",) if scene.motion else ()):
            triplets.append(TextTriplet(scene.caption, paraphrase(scene, rng), replaced(scene, category, rng).caption,
                                        category))
    return triplets
