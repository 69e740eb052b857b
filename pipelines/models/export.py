"""`vljepa export (--run RUN | --preset P) --out MODEL`: a self-contained model directory.

--run takes a training run's latest checkpoint (a `train` run: the model; a `train-decoder`
run: its model with the decoder in y_decoder/); --preset an untrained preset, so serving and
evaluation can be tried without training (its random heads seeded by --seed: reproducible).
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from pathlib import Path

import torch

from model.build import build_vljepa
from model.export import save_model
from model.presets import PRESETS, get_preset
from pipelines.cli.report import run_as_process
from pipelines.decode.config import RUN_KIND, DecoderTrainConfig
from pipelines.train.checkpoints import latest_checkpoint, load_state, local_checkpoint
from pipelines.train.config import TrainConfig


def export_checkpoint(config: TrainConfig, checkpoint, out_dir: Path) -> Path:
    from pipelines.train.loop import initial_model, load_trainable_state

    model = initial_model(config)
    # a local directory, or a ray.train.Checkpoint (possibly on S3: fetched to one, removed after)
    with nullcontext(checkpoint) if isinstance(checkpoint, Path) else checkpoint.as_directory() as directory:
        state = load_state(directory)
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
    parser.add_argument("--seed", type=int, default=0,
                        help="with --preset: seeds the initialisation of the untrained heads (default 0), so "
                             "the same command exports the same model")
    args = parser.parse_args(argv)
    if args.run:
        config_file = Path(args.run) / "train_config.json"
        if not config_file.is_file():
            raise ValueError(f"{args.run} is not a run directory (no train_config.json): "
                             "give the --out of a `vljepa train` or `vljepa train-decoder` run")
        saved = json.loads(config_file.read_text())
        checkpoint = latest_checkpoint(args.run, saved.get("storage"))
        with local_checkpoint(checkpoint) as directory:
            if saved.get("run_kind") == RUN_KIND:
                from pipelines.decode.train_decoder import export_decoder_checkpoint

                export_decoder_checkpoint(DecoderTrainConfig.from_dict(saved), directory, Path(args.out))
            else:
                export_checkpoint(TrainConfig.from_dict(saved), directory, Path(args.out))
        print(f"export: {checkpoint} -> {args.out}")
    else:
        # The projection heads are random: the same seed, the same model. fork_rng: a caller running
        # this in-process (the demo) keeps its own random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = build_vljepa(get_preset(args.preset))
        save_model(model, args.out, metadata={"preset": args.preset, "steps": 0, "caption_prompt": "", "seed": args.seed})
        print(f"export: untrained preset {args.preset!r} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "export"))
