"""`vljepa train-decoder --model MODEL --cache CACHE --out RUN`: train the Y-decoder on Ray Train.

The Y-decoder turns shared-space embeddings into text (captioning, selective decoding). It is
trained apart from VL-JEPA, text-only by default: on the y-encoder's embeddings of the cache's
captions with noise added (--mode text), optionally fine-tuned on the predictor's Ŝ_Y of the
cached clips (--mode predicted --init-decoder RUN/model).

    RUN/ray/train/checkpoint_*   Ray Train checkpoints (decoder, optimizer, step, data position)
    RUN/mlflow.db                MLflow store, unless MLFLOW_TRACKING_URI is set
    RUN/model/                   MODEL with the trained decoder in model/y_decoder/: what
                                 `vljepa caption`, `vljepa stream` and `vljepa serve` load
                                 (also logged to MLflow and registered)

With --eval-cache the run ends by scoring CIDEr on held-out captions: decoded from Ŝ_Y, from the
true S_Y (the ceiling) and from random embeddings (the floor).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from model.config import VLJepaConfig
from model.export import read_manifest
from model.y_decoder_export import DECODER_SUBDIR, save_y_decoder
from pipelines.cli.report import print_json_result, run_as_process
from pipelines.cli.types import non_negative_float, non_negative_int, positive_floats, positive_int
from pipelines.decode.config import MODES, DecoderTrainConfig
from pipelines.train.checkpoints import load_state
from pipelines.train.run_args import add_cluster_args, add_data_args, run_fields


def parse_args(argv: list[str] | None) -> tuple[DecoderTrainConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="vljepa train-decoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # what to train on
    parser.add_argument("--model", required=True, help="exported VL-JEPA model directory or MLflow model URI")
    parser.add_argument("--cache", required=True, action="append",
                        help="feature cache with captions (local or s3://); repeat it to read several as one dataset")
    parser.add_argument("--cache-weights", type=positive_floats, default=None,
                        help="each --cache's share of an epoch, e.g. 0.7,0.3 (default: each by its size)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--mode", choices=MODES, default="text")
    parser.add_argument("--init-decoder", default=None, help="decoder to continue from (a run's RUN/model)")
    parser.add_argument("--decoder-checkpoint", default=None, help="causal LM to start from (default: the preset's)")
    parser.add_argument("--noise-norm", type=float, default=0.3, help="norm of the training noise on unit embeddings")
    parser.add_argument("--text-mix", type=float, default=0.0,
                        help="--mode predicted: fraction of each batch trained on the captions' S_Y instead of Ŝ_Y")
    parser.add_argument("--prefix-length", type=int, default=4)
    # schedule
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64, help="per worker")
    parser.add_argument("--lr", type=non_negative_float, default=1e-3)
    parser.add_argument("--warmup-steps", type=non_negative_int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    add_data_args(parser)
    # scale and faults
    add_cluster_args(parser, checkpoint_every=100)
    # evaluation and tracking
    parser.add_argument("--eval-cache", default=None, help="held-out cache to score CIDEr on at the end")
    parser.add_argument("--num-beams", type=positive_int, default=1, help="decoding for the evaluation: 1 greedy, >1 beam")
    parser.add_argument("--experiment", default="vljepa-decoder")
    parser.add_argument("--registered-model", default="vljepa-captioner", help="MLflow registry name ('' to skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from ops.cache.feature_cache import cache_url
    from pipelines.models.source import local_path_for_workers, source_for_workers

    model = source_for_workers(args.model)
    config = DecoderTrainConfig(
        model=model.source, model_tracking_uri=model.tracking_uri, model_registry_uri=model.registry_uri,
        cache=[cache_url(url) for url in args.cache], cache_weights=args.cache_weights, out=str(Path(args.out).resolve()), mode=args.mode,
        init_decoder=local_path_for_workers(args.init_decoder),
        decoder_checkpoint=local_path_for_workers(args.decoder_checkpoint),
        prefix_length=args.prefix_length, noise_norm=args.noise_norm, text_mix=args.text_mix, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps, seed=args.seed, **run_fields(args),
        eval_cache=cache_url(args.eval_cache), num_beams=args.num_beams,
        experiment=args.experiment, registered_model=args.registered_model or None,
    )
    config.validate()
    args.model_dir = model.local_dir  # resolved once: a mutable MLflow URI is not downloaded again
    return config, args


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # the VL-JEPA weights are shared, not duplicated, on one filesystem
    except OSError:
        shutil.copy2(source, target)


def export_decoder_checkpoint(config: DecoderTrainConfig, checkpoint_dir: Path, out_dir: Path,
                              model_dir: Path | None = None) -> Path:
    """RUN/model: the VL-JEPA model directory (`model_dir`, else config.model resolved here) plus the
    checkpoint's decoder in y_decoder/."""
    from pipelines.decode.loop import initial_decoder
    from pipelines.models.source import resolve_model_dir

    state = load_state(checkpoint_dir)
    model_dir = model_dir or resolve_model_dir(config.model, config.model_tracking_uri, config.model_registry_uri)
    model_config = VLJepaConfig.from_dict(read_manifest(model_dir)["config"])
    decoder = initial_decoder(config, model_config)
    decoder.load_state_dict(state["decoder"])
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model_dir, staging, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns(DECODER_SUBDIR))
    save_y_decoder(decoder, staging / DECODER_SUBDIR,
                   metadata={"mode": config.mode, "steps": state["step"], "cache": config.cache,
                             "noise_norm": config.noise_norm, "text_mix": config.text_mix, "model": config.model})
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)  # a half-written model directory is never left under the final name
    return out_dir


def run(config: DecoderTrainConfig, resume: bool = False, address: str | None = None,
        model_dir: Path | None = None, verbose: bool = False) -> dict:
    """The run; `model_dir`: where this process already resolved config.model (else resolved here)."""
    import mlflow

    from model.checkpoint_loading import check_reachable
    from model.export import recorded_x_encoder
    from pipelines.decode.loop import decoder_loop_per_worker, starting_lm
    from pipelines.models.source import resolve_model_dir
    from pipelines.train.data import DECODER_MEDIA_KINDS, DECODER_TASKS, build_decoder_dataset
    from pipelines.train.driver import check_caches, fit, open_tracking, require_full_batches
    from pipelines.train.tracking import log_and_register, plot_curves, using_tracking_uri

    # the predictor reads cached S_V (eval cache, and the training cache on predictions): of the
    # x-encoder the model was trained on (recorded at export; None for an older export: not checked)
    model_dir = model_dir or resolve_model_dir(config.model, config.model_tracking_uri, config.model_registry_uri)
    check_caches(config, recorded_x_encoder(model_dir), reader=f"model {config.model}")
    require_full_batches(config.cache, DECODER_MEDIA_KINDS, DECODER_TASKS, config.workers, config.batch_size,
                         "the Y-decoder", weighted=bool(config.cache_weights))
    start = starting_lm(config, VLJepaConfig.from_dict(read_manifest(model_dir)["config"]))
    if start is not None:  # each worker starts from this LM (the paper's: gated Llama): reachable?
        check_reachable(start.checkpoint)
    open_tracking(config, run_name=f"y-decoder-{config.mode}-{Path(config.out).name}", resume=resume)
    mixed = f" ({config.text_mix:.0%} of rows on S_Y)" if config.text_mix else ""
    print(f"train-decoder: mode {config.mode}{mixed}, {config.steps} steps, {config.workers} worker(s) x batch {config.batch_size}")
    result = fit(decoder_loop_per_worker, config, lambda: {"train": build_decoder_dataset(config)}, address, verbose)
    with result.checkpoint.as_directory() as checkpoint_dir:
        exported = export_decoder_checkpoint(config, Path(checkpoint_dir), Path(config.out) / "model", model_dir)
    with using_tracking_uri(config.tracking_uri), mlflow.start_run(run_id=config.mlflow_run_id):
        registered = log_and_register(exported, config.registered_model)
        curves = plot_curves(Path(config.out), config.mlflow_run_id, "train-decoder")
    print(f"train-decoder: model with decoder exported to {exported}" + (f", registered as {registered}" if registered else ""))
    print(f"train-decoder: curves in {curves}")
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    return {"run": config.out, "model": str(exported), "mlflow_run_id": config.mlflow_run_id,
            "tracking_uri": config.tracking_uri, "registered_model": registered, "curves": str(curves),
            "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    try:
        config, options = parse_args(argv)
    except ValueError as exc:
        print(f"train-decoder: {exc}", file=sys.stderr)
        return 2
    summary = run(config, resume=options.resume, address=options.address, model_dir=options.model_dir,
                  verbose=options.verbose)
    if options.json:
        print_json_result(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "train-decoder"))
