"""`make demo`: the main job, end to end on what the system can do so far.

Today it runs:
  1. `vljepa summary` for the paper preset (meta device, no weights) and the offline preset;
  2. builds the offline model (`minilm` by default: tiny vision side + real pretrained MiniLM);
  3. renders a few captioned clips, encodes them with the frozen x-encoder, predicts Ŝ_Y with a
     captioning query and ranks candidate captions in the shared space;
  4. shows that the text side is semantic already (the y-encoder is pretrained).

The predictor is untrained at this stage, so step 3's ranking is arbitrary. The data, training
and serving stages extend this demo as they land (see README, "Status").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model.build import build_vljepa
from model.presets import get_preset
from model.tasks import classify
from ops.preprocess import preprocess_frames
from ops.scenes import Scene, all_scenes, render_clip
from pipelines import summary
from pipelines.report import table

CAPTION_PROMPT = "Describe what happens in the video."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vljepa demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where outputs go")
    parser.add_argument("--preset", default="minilm", choices=["minilm", "tiny"])
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    banner("1. model summary: the paper's model, built on the meta device (no weights)")
    summary.main(["--preset", "paper"])
    banner(f"   and the offline preset {args.preset!r}")
    summary.main(["--preset", args.preset])

    banner(f"2. building the {args.preset!r} model from its local checkpoints")
    model = build_vljepa(get_preset(args.preset)).eval()
    size, num_frames = model.config.x_encoder.image_size, model.config.x_encoder.num_frames

    banner("3. zero-shot captioning by ranking candidate captions (predictor untrained: arbitrary)")
    scenes = [Scene("ball", "red", "moves left"), Scene("cube", "blue", "moves up"),
              Scene("triangle", "yellow", "moves right")]
    clips = torch.stack([preprocess_frames(render_clip(s, num_frames, 96, rng), size) for s in scenes])
    s_v = model.encode_visual(clips)  # (B, N, D_v)
    labels = [scene.caption for scene in all_scenes()]
    ranking = classify(model, s_v, labels, prompt=CAPTION_PROMPT)
    rows = [[scene.caption, labels[int(ranking.indices[i, 0])], f"{float(ranking.scores[i, 0]):.3f}"]
            for i, scene in enumerate(scenes)]
    print(f"S_V {tuple(s_v.shape)} -> Ŝ_Y, ranked against {len(labels)} candidate captions")
    print(table(rows, ["clip shows", "top-ranked caption", "cosine"]))

    banner("4. the y-encoder's shared space is semantic before any training")
    texts = ["a dog runs across the grass", "a puppy running in a field", "a bowl of pasta on a table"]
    embedded = model.embed_texts(texts)
    print(table([[texts[0], t, f"{float(embedded[0] @ e):.3f}"] for t, e in zip(texts[1:], embedded[1:])],
                ["text", "compared with", "cosine"]))
    print(f"\ndemo finished; outputs under {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
