"""The embedded sample dataset: real encoded media with captions that say what happens.

    train/ and eval/, each with
      video-caption shards (Action100M-like):  <key>.mp4 (H.264) + <key>.txt "a red ball moves left"
      image-caption shards (Datacomp-like):    <key>.jpg | <key>.png + <key>.txt "a red ball"
      VQA shards (PLM-like):                   <key>.mp4 + <key>.json {query, answer, candidates}

Eval holds (shape, colour, motion) combinations never seen in training: for each shape/colour
pair one of the four motions is held out, so zero-shot classification and retrieval on eval
measure composition, not memorisation. Deterministic given the seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ops.data.frames import encode_h264, encode_image
from ops.data.scenes import COLOURS, MOTIONS, SHAPES, Scene, all_scenes, render_clip, render_image
from ops.data.shards import ShardWriter
from ops.evaluate.text_triplets import TextTriplet

VQA_QUESTIONS = {
    "motion": ("Which way does the object move?", lambda s: s.motion.removeprefix("moves "), ["left", "right", "up", "down"]),
    "colour": ("What colour is the object?", lambda s: s.colour, list(COLOURS)),
    "shape": ("What shape is the object?", lambda s: s.shape, list(SHAPES)),
}


@dataclass(frozen=True, kw_only=True)
class SampleDataConfig:
    seed: int = 0
    clips_per_scene: int = 24  # training clips per seen (shape, colour, motion)
    eval_clips_per_scene: int = 4
    images_per_scene: int = 4  # training images per (shape, colour)
    vqa_per_scene: int = 2
    num_frames: int = 16  # frames per clip (8 fps: two-second clips)
    frame_size: int = 96
    samples_per_shard: int = 64


def is_held_out(scene: Scene) -> bool:
    shape_index, colour_index = SHAPES.index(scene.shape), list(COLOURS).index(scene.colour)
    return list(MOTIONS).index(scene.motion) == (shape_index + colour_index) % len(MOTIONS)


def split_scenes() -> tuple[list[Scene], list[Scene]]:
    scenes = all_scenes()
    return [s for s in scenes if not is_held_out(s)], [s for s in scenes if is_held_out(s)]


def _clip(scene, config, rng) -> bytes:
    return encode_h264(render_clip(scene, config.num_frames, config.frame_size, rng))


def split_samples(split: str, config: SampleDataConfig) -> dict[str, list[Callable[[np.random.Generator], dict]]]:
    """kind -> sample makers (each takes the rng and returns the members of one sample)."""
    train, held_out = split_scenes()
    scenes = train if split == "train" else held_out
    per_scene = config.clips_per_scene if split == "train" else config.eval_clips_per_scene
    kinds: dict[str, list] = {"video": [], "image": [], "vqa": []}
    for scene in scenes:
        for _ in range(per_scene):
            kinds["video"].append(lambda rng, s=scene: {
                "mp4": _clip(s, config, rng), "txt": s.caption.encode(),
                "json": json.dumps({"source": "sample-video", "task": "caption", "label": s.label}).encode()})
        for index in range(config.vqa_per_scene if split == "train" else 1):
            question, answer_of, options = list(VQA_QUESTIONS.values())[index % len(VQA_QUESTIONS)]
            kinds["vqa"].append(lambda rng, s=scene, q=question, a=answer_of, o=options: {
                "mp4": _clip(s, config, rng),
                "json": json.dumps({"source": "sample-vqa", "task": "vqa", "query": q, "answer": a(s),
                                    "candidates": o}).encode()})
    if split == "train":  # still images of every shape/colour: composition is tested on motion
        for shape in SHAPES:
            for colour in COLOURS:
                scene = Scene(shape, colour)
                for index in range(config.images_per_scene):
                    fmt = "jpeg" if index % 2 == 0 else "png"
                    kinds["image"].append(lambda rng, s=scene, f=fmt: {
                        ("jpg" if f == "jpeg" else "png"): encode_image(render_image(s, config.frame_size, rng), f),
                        "txt": s.caption.encode(),
                        "json": json.dumps({"source": "sample-image", "task": "caption", "label": s.label}).encode()})
    return kinds


def write_split(out_dir: str, split: str, config: SampleDataConfig, progress=None) -> list[str]:
    """Write one split's shards under out_dir/split; returns their URLs."""
    rng = np.random.default_rng([config.seed, 0 if split == "train" else 1])
    urls: list[str] = []
    shard_index = 0
    for kind, makers in split_samples(split, config).items():
        order = rng.permutation(len(makers))
        for start in range(0, len(makers), config.samples_per_shard):
            url = f"{out_dir}/{split}/{kind}-{shard_index:05d}.tar"
            with ShardWriter(url) as writer:
                for position in order[start : start + config.samples_per_shard]:
                    writer.write(f"{kind}{position:06d}", makers[position](rng))
                    if progress is not None:
                        progress()
            urls.append(url)
            shard_index += 1
    return urls


def count_samples(split: str, config: SampleDataConfig) -> int:
    return sum(len(v) for v in split_samples(split, config).values())


# Hard-negative text triplets of the sample dataset's scenes, built the way SugarCrepe++ builds its
# own: p1 is a scene's caption ("a red ball moves left"), p2 says the same in other words ("the
# sphere, coloured red, travels to the left"), and n is p1 with one thing replaced ("a blue ball moves
# left"): little lexical overlap between the positives, a lot between p1 and the negative. Categories
# name what the negative replaced: colour, shape or motion. Deterministic given the seed.
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
