"""`make demo`: the main job, end to end on what the system can do so far.

Today it runs:
  1. `vljepa summary` for the paper preset (meta device, no weights);
  2. `vljepa sample-data`: real H.264 clips, JPEG/PNG images and VQA samples as webdataset shards;
  3. `vljepa cache-features` on Ray Data for the train and eval splits (and a re-run that skips);
  4. loads cached eval features, predicts Ŝ_Y with a captioning query and ranks the candidate
     captions in the shared space;
  5. shows that the text side is semantic already (the y-encoder is pretrained).

The predictor is untrained at this stage, so step 4's ranking is arbitrary. The training and
serving stages extend this demo as they land (see README, "Status").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.build import build_vljepa
from model.presets import get_preset
from model.tasks import classify
from ops.feature_cache import FeatureCache, s_v_from_row
from ops.scenes import all_scenes
from pipelines import cache_features, sample_data, summary
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


def cached_clips(cache_dir: Path, limit: int) -> tuple[torch.Tensor, list[str]]:
    """The first `limit` captioned clips of a cache: S_V (B, N, D) and their captions."""
    cache = FeatureCache(str(cache_dir))
    s_v, captions = [], []
    for path in cache.shard_files():
        shard = Path(path).name.removesuffix(".parquet")
        for row in cache.read_shard(shard).to_pylist():
            if row["media_kind"] == "video" and row["task"] == "caption" and len(s_v) < limit:
                s_v.append(torch.from_numpy(s_v_from_row(row["s_v_shape"], row["s_v"]).astype("float32")))
                captions.append(row["target"])
    return torch.stack(s_v), captions


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    banner("1. model summary: the paper's model, built on the meta device (no weights)")
    summary.main(["--preset", "paper"])

    banner("2. sample data: real H.264 clips, JPEG/PNG images, VQA samples as webdataset shards")
    sample_data.main(["--out", str(out / "data"), "--seed", str(args.seed)])

    banner("3. feature caching on Ray Data: parse -> decode -> frozen x-encoder actors -> Parquet")
    for split in ("train", "eval"):
        cache_features.main(["--shards", str(out / "data" / split), "--out", str(out / "cache" / split),
                             "--preset", args.preset])
    banner("   re-run: complete shards with the same fingerprint are skipped")
    cache_features.main(["--shards", str(out / "data" / "eval"), "--out", str(out / "cache" / "eval"),
                         "--preset", args.preset, "--dry-run"])

    banner(f"4. ranking candidate captions from cached eval features ({args.preset!r}, predictor untrained: arbitrary)")
    model = build_vljepa(get_preset(args.preset)).eval()
    s_v, captions = cached_clips(out / "cache" / "eval", limit=4)
    labels = [scene.caption for scene in all_scenes()]
    ranking = classify(model, s_v, labels, prompt=CAPTION_PROMPT)
    rows = [[caption, labels[int(ranking.indices[i, 0])], f"{float(ranking.scores[i, 0]):.3f}"]
            for i, caption in enumerate(captions)]
    print(f"S_V {tuple(s_v.shape)} -> Ŝ_Y, ranked against {len(labels)} candidate captions")
    print(table(rows, ["clip shows", "top-ranked caption", "cosine"]))

    banner("5. the y-encoder's shared space is semantic before any training")
    texts = ["a dog runs across the grass", "a puppy running in a field", "a bowl of pasta on a table"]
    embedded = model.embed_texts(texts)
    print(table([[texts[0], t, f"{float(embedded[0] @ e):.3f}"] for t, e in zip(texts[1:], embedded[1:])],
                ["text", "compared with", "cosine"]))
    print(f"\ndemo finished. data: {(out / 'data').resolve()}  feature cache: {(out / 'cache').resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
