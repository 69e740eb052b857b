"""What every Ray Train driver of this project shares: the MLflow run of a run directory, and the
TorchTrainer with its storage, failure and checkpoint policy.

A run config (TrainConfig, DecoderTrainConfig) carries: out, storage, placement_strategy,
tracking_uri, experiment, mlflow_run_id, workers, cpus_per_worker, max_failures, max_preemptions,
keep_checkpoints, to_dict() and caches().

Checkpoints go to `storage` when set (`s3://bucket/prefix` or a shared filesystem path: what a
multi-node cluster needs, since every node writes there), else RUN/ray on local disk.
"""

from __future__ import annotations

import json
from pathlib import Path


def check_caches(config, x_encoder: dict[str, str] | None = None, reader: str = "this run's preset") -> None:
    """Every cache the run reads exists, before anything is written: a mistyped --cache or
    --eval-cache fails here, not in the workers after Ray Train started them (a Y-decoder run reads
    its eval cache at its end), and leaves no half-made run directory that a corrected command
    would then refuse without --resume. Given `x_encoder` (model.encoder_identity), each cache
    whose S_V the run reads (config.feature_caches()) must hold that encoder's features."""
    from ops.cache.files import require_feature_cache

    for url in config.caches():
        require_feature_cache(url, x_encoder if url in config.feature_caches() else None, reader)


def rows_by_kind(kinds: dict[str, int]) -> str:
    return ", ".join(f"{kind} {rows}" for kind, rows in sorted(kinds.items())) or "no rows"


def require_full_batches(urls: list[str], media_kinds: tuple[str, ...], tasks: tuple[str, ...], workers: int,
                         batch_size: int, what: str, share: float = 1.0, weighted: bool = False) -> None:
    """The rows `what` selects from the caches (read as one dataset) fill at least one batch on
    every worker (each reads an equal split and drops a partial batch). Checked from the manifests
    before Ray starts: found by the workers instead, it is a traceback from each, retried
    --max-failures times. `share`: the part of the mix these caches make (SFT replays pretraining
    rows beside them). `weighted` (--cache-weights): each cache must hold rows to give its share.
    Caches whose markers predate the per-kind counts are counted from their files' columns."""
    from ops.cache.files import selected_row_count

    selected, by_kind = 0, {}
    for url in urls:
        rows, kinds = selected_row_count(url, media_kinds, tasks)
        if rows is None:
            return
        if weighted and rows == 0:
            raise ValueError(f"--cache-weights gives {url} a share, but it holds no rows {what} trains on "
                             f"({' or '.join(media_kinds)}; {', '.join(tasks)}); it holds {rows_by_kind(kinds)}")
        selected += rows
        for kind, count in kinds.items():
            by_kind[kind] = by_kind.get(kind, 0) + count
    needed = workers * batch_size
    if selected / share >= needed:
        return
    held = rows_by_kind(by_kind)
    where = urls[0] if len(urls) == 1 else f"the {len(urls)} caches ({', '.join(urls)}) together"
    raise ValueError(f"{where} hold{'s' if len(urls) == 1 else ''} {selected} rows {what} trains on "
                     f"({' or '.join(media_kinds)}; {', '.join(tasks)}), fewer than a batch per worker "
                     f"({workers} x {batch_size} = {needed}); {'it holds' if len(urls) == 1 else 'they hold'} {held}: "
                     "lower --batch-size or --workers, or cache more data")


def open_tracking(config, run_name: str, resume: bool) -> dict:
    """Create (or, on resume, reopen) the run's MLflow run and log the resolved config as params.
    Fills in config.tracking_uri and config.mlflow_run_id; returns the config as a dict."""
    import mlflow

    from pipelines.train.resume import check_resumable
    from pipelines.train.tracking import (
        flatten,
        log_cache_inputs,
        start_or_resume_run,
        tracking_uri_for,
        using_tracking_uri,
    )

    if not config.experiment.strip():  # MLflow's own refusal comes after the run directory is made
        raise ValueError("--experiment must name an MLflow experiment, not be empty")
    out = Path(config.out)
    started, resumed_tags = (out / "train_config.json").exists(), {}
    if started and not resume:
        raise SystemExit(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if started:  # and resuming: with the settings it was started with (pipelines/train/resume.py)
        resumed_tags = check_resumable(out, config.to_dict())
    elif resume:
        # kept a start, not an error: a job that always passes --resume restarts or begins alike
        print(f"--resume: {out} holds no run yet; starting one")
    out.mkdir(parents=True, exist_ok=True)
    config.tracking_uri = tracking_uri_for(str(out), config.tracking_uri)
    with using_tracking_uri(config.tracking_uri):
        config.mlflow_run_id = start_or_resume_run(str(out), config.tracking_uri, config.experiment, run_name)
        public = config.to_dict()
        (out / "train_config.json").write_text(json.dumps(public, indent=2, sort_keys=True))
        with mlflow.start_run(run_id=config.mlflow_run_id):
            existing = mlflow.get_run(config.mlflow_run_id).data.params
            # a resumed run keeps its original params (MLflow params are write-once); the RESUMABLE
            # settings it changed go in as tags, resumed.NAME = the value it now runs with
            mlflow.log_params({k: v for k, v in flatten(public).items() if k not in existing})
            mlflow.set_tags(resumed_tags)
            if not started:  # a resumed run logged them when it started
                log_cache_inputs({"training": list(config.cache),
                                  "replay": [url for url in [getattr(config, "replay_cache", None)] if url],
                                  "evaluation": [config.eval_cache] if config.eval_cache else []})
    print(f"MLflow run {config.mlflow_run_id} in {config.tracking_uri}")
    return public


def worker_cpus(workers: int, cluster_cpus: float, use_gpu: bool) -> float:
    """CPUs per training worker. Ray Data's read and filter tasks stream the cache while training
    runs; if the workers reserved every CPU those tasks could never start and training would wait
    forever. So on a CPU cluster too small for one CPU each plus one spare, workers share."""
    if use_gpu or cluster_cpus - workers >= 1:
        return 1.0
    return max(0.1, (cluster_cpus - 1) / workers)


def storage_of(config) -> tuple[str, object | None]:
    """(storage_path, storage_filesystem) for RunConfig. S3 goes through s3fs, which honours
    AWS_ENDPOINT_URL and the rest of the environment the way the feature cache does."""
    if config.storage and config.storage.startswith("s3://"):
        import pyarrow.fs
        import s3fs

        handler = pyarrow.fs.FSSpecHandler(s3fs.S3FileSystem())
        return config.storage.removeprefix("s3://"), pyarrow.fs.PyFileSystem(handler)
    if config.storage and "://" not in config.storage:
        # a relative path is the driver's (Ray Train's controller refuses one: "URI has empty scheme")
        return str(Path(config.storage).resolve()), None
    return config.storage or str(Path(config.out) / "ray"), None


def fit(loop, config, build_datasets, address: str | None, verbose: bool = False):
    """Run `loop` on config.workers Ray Train workers; returns the Result (its last checkpoint).

    `build_datasets()` -> {name: Dataset}, called once Ray is up (on `address`, with the
    project's Ray Data settings): building them first would start a local Ray of Ray Data's own.
    Ray Data's progress bars (a dozen lines per epoch's execution, redrawn every second) and its
    execution plans only when `verbose`: rank 0's progress lines say how training goes. Datasets keep the context they are
    built under, so it is set before.
    """
    import ray
    import ray.data
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchTrainer

    from pipelines.cluster.ray_runtime import gpus_available, init_ray

    init_ray(address)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = verbose
    datasets = build_datasets()
    use_gpu = gpus_available() > 0
    cpus = config.cpus_per_worker or worker_cpus(config.workers, ray.cluster_resources().get("CPU", 1), use_gpu)
    storage_path, storage_filesystem = storage_of(config)
    trainer = TorchTrainer(
        loop,
        train_loop_config=config.to_dict(),
        scaling_config=ray.train.ScalingConfig(num_workers=config.workers, use_gpu=use_gpu,
                                               resources_per_worker={"CPU": cpus},
                                               placement_strategy=config.placement_strategy),
        run_config=ray.train.RunConfig(
            storage_path=storage_path, storage_filesystem=storage_filesystem, name="train",
            # preemptions have their own budget: --max-failures is for real failures (pipelines/train/preemption.py)
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures,
                                                   max_preemption_failures=config.max_preemptions),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.keep_checkpoints),
        ),
        datasets=datasets,
        # a fixed order: with the seeded local shuffle, a run (and a resumed run) replays exactly
        dataset_config=ray.train.DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("training produced no checkpoint")
    return result
