"""`vljepa export (--run RUN | --preset P) --out MODEL`: a self-contained model directory.

--run takes a training run's latest checkpoint; --preset an untrained preset, so serving and
evaluation can be tried without training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from model.build import build_vljepa
from model.export import save_model
from model.presets import PRESETS, get_preset
from pipelines.train_config import STATE_FILE, TrainConfig


def latest_checkpoint(run_dir: str | Path) -> Path:
    candidates = [p.parent for p in (Path(run_dir) / "ray").rglob(STATE_FILE)]
    if not candidates:
        raise ValueError(f"{run_dir} holds no training checkpoint")
    return max(candidates, key=lambda p: torch.load(p / STATE_FILE, weights_only=False)["step"])


def export_checkpoint(config: TrainConfig, checkpoint, out_dir: Path) -> Path:
    from pipelines.train_loop import initial_model, load_trainable_state

    directory = checkpoint if isinstance(checkpoint, Path) else Path(checkpoint.path)
    state = torch.load(directory / STATE_FILE, weights_only=False)
    model = initial_model(config)
    load_trainable_state(model, state["model"])
    metadata = {"stage": config.stage, "steps": state["step"], "caption_prompt": config.spec.caption_prompt,
                "preset": config.preset, "cache": config.cache}
    return save_model(model, out_dir, metadata=metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vljepa export", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a training run directory")
    source.add_argument("--preset", choices=sorted(PRESETS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.run:
        config = TrainConfig.from_dict(json.loads((Path(args.run) / "train_config.json").read_text()))
        checkpoint = latest_checkpoint(args.run)
        export_checkpoint(config, checkpoint, Path(args.out))
        print(f"export: {checkpoint} -> {args.out}")
    else:
        save_model(build_vljepa(get_preset(args.preset)), args.out, metadata={"preset": args.preset, "steps": 0,
                                                                             "caption_prompt": ""})
        print(f"export: untrained preset {args.preset!r} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
