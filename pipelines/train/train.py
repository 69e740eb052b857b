"""`vljepa train --stage STAGE --cache CACHE --out RUN`: optimise predictor + y-encoder on Ray Train.

Several `--cache` options make one dataset: every epoch reads each cache's rows once, shuffled
together (a cache per source, e.g. Datacomp and YFCC cached separately for the image stage), or
in the shares `--cache-weights` gives (a small source repeated, a large one subsampled).

    RUN/ray/train/checkpoint_*     Ray Train checkpoints (or under --storage, e.g. s3://)
    RUN/mlflow.db                  MLflow store, unless MLFLOW_TRACKING_URI is set
    RUN/mlartifacts/               MLflow artifacts of that store
    RUN/model/                     the exported final model (also logged and registered in MLflow)
    RUN/train_config.json          the resolved config

A stopped or crashed run continues with `--resume` (same RUN): training resumes from the last
checkpoint and logs into the same MLflow run. Worker failures inside a run are retried up to
--max-failures times, each from the last checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli.report import print_json_result, run_as_process
from pipelines.cli.types import non_negative_float, non_negative_int, positive_floats, triplet_fields
from pipelines.models.source import source_for_workers
from pipelines.train.config import STAGES, TrainConfig
from pipelines.train.run_args import add_cluster_args, add_data_args, run_fields


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace]:
    """The run's config, and the options that steer this invocation (--resume, --address, --json)."""
    parser = argparse.ArgumentParser(prog="vljepa train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # what to train on
    parser.add_argument("--stage", required=True, choices=sorted(STAGES))
    parser.add_argument("--cache", required=True, action="append",
                        help="feature cache (local or s3://); repeat it to train on several caches as one dataset "
                             "(e.g. one per source)")
    parser.add_argument("--cache-weights", type=positive_floats, default=None,
                        help="each --cache's share of an epoch, e.g. 0.7,0.3 (default: each by its size)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--init-model", default=None,
                        help="model to start from (a previous stage's RUN/model, or models:/NAME/VERSION)")
    parser.add_argument("--replay-cache", default=None, help="sft: pretraining cache to replay")
    parser.add_argument("--replay-weight", type=float, default=0.0, help="sft: share of replayed rows")
    # schedule
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=non_negative_float, default=None, help="base lr (default: the stage's)")
    parser.add_argument("--warmup-steps", type=non_negative_int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    add_data_args(parser)
    # scale and faults
    add_cluster_args(parser, checkpoint_every=50)
    # evaluation and tracking
    parser.add_argument("--eval-cache", default=None)
    parser.add_argument("--eval-every", type=non_negative_int, default=0)
    parser.add_argument("--eval-text-triplets", action="append", default=None, metavar="FILE",
                        help="hard-negative text triplets scored with --eval-cache's evaluations (or alone): the "
                             "y-encoder's eval.text_triplets.accuracy in MLflow (see vljepa evaluate); repeatable")
    parser.add_argument("--triplet-fields", type=triplet_fields, default=TrainConfig.eval_triplet_fields, metavar="P1,P2,N",
                        help="the triplet file's fields for the two positives and the negative (default: p1,p2,n)")
    parser.add_argument("--experiment", default="vljepa")
    parser.add_argument("--registered-model", default="vljepa", help="MLflow registry name ('' to skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from ops.cache.feature_cache import cache_url  # workers resolve a relative path in their own directory

    init = source_for_workers(args.init_model) if args.init_model else None  # checked before Ray starts
    config = TrainConfig(
        stage=args.stage, cache=[cache_url(url) for url in args.cache], cache_weights=args.cache_weights,
        out=str(Path(args.out).resolve()), preset=args.preset,
        init_model=init and init.source, init_model_tracking_uri=init and init.tracking_uri,
        init_model_registry_uri=init and init.registry_uri,
        steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        warmup_steps=args.warmup_steps, seed=args.seed, **run_fields(args),
        eval_cache=cache_url(args.eval_cache), eval_every=args.eval_every,
        eval_text_triplets=args.eval_text_triplets and [cache_url(url) for url in args.eval_text_triplets],
        eval_triplet_fields=",".join(args.triplet_fields),
        replay_cache=cache_url(args.replay_cache), replay_weight=args.replay_weight,
        experiment=args.experiment, registered_model=args.registered_model or None,
    )
    config.validate()
    return config, args


def run(config: TrainConfig, resume: bool = False, address: str | None = None, verbose: bool = False) -> dict:
    from model.checkpoint_loading import check_reachable
    from model.encoder_identity import x_encoder_identity
    from model.presets import get_preset
    from ops.evaluate.text_triplets import parse_fields, read_triplet_files
    from pipelines.train.data import build_train_dataset
    from pipelines.train.driver import check_caches, fit, open_tracking, require_full_batches
    from pipelines.train.loop import train_loop_per_worker

    preset = get_preset(config.preset)
    # the predictor reads the preset's x-encoder features: a cache of another encoder's is refused here
    check_caches(config, x_encoder_identity(preset.x_encoder.checkpoint), reader=f"this run's preset {config.preset}")
    replayed = config.replay_weight if config.replay_cache else 0.0
    require_full_batches(config.cache, config.spec.media_kinds, config.spec.tasks, config.workers, config.batch_size,
                         f"stage {config.stage}", share=1.0 - replayed, weighted=bool(config.cache_weights))
    if config.eval_text_triplets:  # a wrong file or field name fails now, not at rank 0's first evaluation
        read_triplet_files(config.eval_text_triplets, parse_fields(config.eval_triplet_fields))
    if not config.init_model:  # every worker loads the preset's checkpoints: without the hub, say so now
        for component in (preset.x_encoder, preset.predictor, preset.y_encoder):
            check_reachable(component.checkpoint)
    open_tracking(config, run_name=f"{config.stage}-{Path(config.out).name}", resume=resume)
    print(f"train: stage {config.stage}, {config.steps} steps, {config.workers} worker(s) x batch {config.batch_size}")
    result = fit(train_loop_per_worker, config, lambda: {"train": build_train_dataset(config)}, address, verbose)
    return finish(config, result.checkpoint, result.metrics or {})


def finish(config: TrainConfig, checkpoint, metrics: dict) -> dict:
    """Export the final model, log it to MLflow and register it."""
    import mlflow

    from pipelines.models.export import export_checkpoint
    from pipelines.train.tracking import log_and_register, plot_curves

    model_dir = Path(config.out) / "model"
    export_checkpoint(config, checkpoint, model_dir)
    from pipelines.train.tracking import using_tracking_uri

    with using_tracking_uri(config.tracking_uri), mlflow.start_run(run_id=config.mlflow_run_id):
        registered = log_and_register(model_dir, config.registered_model)
        curves = plot_curves(Path(config.out), config.mlflow_run_id, "train")
    print(f"train: curves in {curves}")
    summary = {"run": config.out, "model": str(model_dir), "mlflow_run_id": config.mlflow_run_id,
               "tracking_uri": config.tracking_uri, "registered_model": registered, "curves": str(curves),
               "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    print(f"train: model exported to {model_dir}" + (f", registered as {registered}" if registered else ""))
    ui_hint = config.tracking_uri if config.tracking_uri.startswith("sqlite") else None
    if ui_hint:
        print(f"train: browse it with  mlflow ui --backend-store-uri {ui_hint}")
    return summary


def main(argv: list[str] | None = None) -> int:
    try:
        config, options = parse_args(argv)
    except ValueError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    summary = run(config, resume=options.resume, address=options.address, verbose=options.verbose)
    if options.json:
        print_json_result(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "train"))
