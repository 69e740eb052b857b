"""Training throughput through Ray Train vs a bare torch loop, scaling 1 -> 2 workers, and peak
worker memory as the cache grows 10x (it must stay flat: the cache streams, it is never loaded).

Same model (minilm preset), same cached batches, same batch size, same torch threads, the same
step (train mode, InfoNCE, the shared clip + AdamW + schedule update of model.optim.apply_update):
  bare      one process: rows read with pyarrow once, collated, trained; no Ray at all (run
            before and after ray x1; the ratios use their mean)
  ray x1    `vljepa train` with 1 worker (samples/s as the loop reports it, warm-up windows dropped)
  spare     bare and ray x1 again with one torch thread fewer than cores: Ray's processes get a core
  ray x2    the same with 2 workers on the same machine (global samples/s)
  memory    ray x1 on the cache and on a 10x copy of it: peak RSS of the worker

    python -m benchmarks.train_throughput [--steps 120]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import torch

from model.build import build_vljepa
from model.loss import InfoNCELoss
from model.optim import apply_update, build_optimizer
from model.presets import get_preset
from ops.cache.feature_cache import FeatureCache
from ops.data.sample_data import SampleDataConfig, write_split
from ops.evaluate.zero_shot import load_rows
from ops.train.collate import Collate
from pipelines.cache import cache_features
from pipelines.train import train
from pipelines.train.config import TrainConfig
from pipelines.train.loop import lr_factor

BATCH = 32
WARMUP_WINDOWS = 2  # logging windows dropped from Ray's numbers (worker start, first epoch)


def bare_loop(cache: str, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = [r for r in load_rows(cache) if r["media_kind"] == "video" and r["task"] == "caption"]
    model = build_vljepa(get_preset("minilm")).train()  # dropout on, as in the Ray loop
    config = TrainConfig(stage="pretrain-video", cache=cache, out="", steps=steps, lr=1e-3)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    collate = Collate(model.target_tokenizer, model.query_tokenizer, 256, 512, use_query=False)
    columns = ["s_v", "s_v_shape", "target", "query", "task"]
    batches = []
    for start in range(0, len(rows) - BATCH + 1, BATCH):
        chunk = rows[start : start + BATCH]
        batches.append({c: np.array([r[c] for r in chunk] + [None], dtype=object)[:-1] for c in columns})
    done, started = 0, None
    while done < steps:
        for batch in batches:
            if done == 5:
                started = time.perf_counter()  # same warm-up spirit as the Ray side
            tensors = collate(batch)  # collation counted, as Ray's loop counts it
            predicted, target = model(**tensors)
            InfoNCELoss()(predicted, target, model.scale()).backward()
            apply_update(optimizer, scheduler, config.grad_clip)  # the Ray loop's update, clipping included
            done += 1
            if done == steps:
                break
    return (steps - 5) * BATCH / (time.perf_counter() - started)


def ray_run(cache: str, out: Path, steps: int, workers: int, threads: int = 0) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        train.main(["--stage", "pretrain-video", "--cache", cache, "--out", str(out), "--steps", str(steps),
                    "--workers", str(workers), "--batch-size", str(BATCH), "--lr", "1e-3", "--log-every", "10",
                    "--checkpoint-every", str(steps), "--registered-model", "", "--threads-per-worker", str(threads)])
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    run_id = (out / "mlflow_run_id.txt").read_text().strip()
    rates = [m.value for m in sorted(client.get_metric_history(run_id, "samples_per_s"), key=lambda m: m.step)]
    rss = max(m.value for m in client.get_metric_history(run_id, "peak_rss_mb"))
    return {"samples_per_s": statistics.median(rates[WARMUP_WINDOWS:]), "peak_rss_mb": round(rss, 1)}


def tenfold(cache: str, out: str) -> str:
    """The same cache, ten copies of every shard under new names."""
    source = FeatureCache(cache)
    manifest = source.manifest()
    target = Path(out)
    target.mkdir(parents=True)
    shards = {}
    for copy in range(10):
        for name, counts in manifest["shards"].items():
            shutil.copy(Path(cache) / f"{name}.parquet", target / f"{name}-x{copy}.parquet")
            shards[f"{name}-x{copy}"] = counts
    (target / "manifest.json").write_text(json.dumps({**manifest, "shards": shards}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as root:
        write_split(root, "train", SampleDataConfig())
        with contextlib.redirect_stdout(io.StringIO()):
            cache_features.main(["--shards", f"{root}/train", "--out", f"{root}/cache", "--preset", "minilm"])
        cache = f"{root}/cache"
        # the bare loop before and after the Ray run, the ratio against their mean: this VM's speed
        # drifts by several percent over minutes (single bare runs of 129-138 samples/s)
        bare_runs = [bare_loop(cache, args.steps, threads=cores)]
        one = ray_run(cache, Path(root) / "run1", args.steps, workers=1)
        bare_runs.append(bare_loop(cache, args.steps, threads=cores))
        bare = statistics.mean(bare_runs)
        # the same with one torch thread on each side: Ray's own processes get the spare core(s),
        # as they do on a GPU node, where the step does not occupy every CPU
        bare_spare = bare_loop(cache, args.steps, threads=max(1, cores - 1))
        one_spare = ray_run(cache, Path(root) / "run1s", args.steps, workers=1, threads=max(1, cores - 1))
        two = ray_run(cache, Path(root) / "run2", args.steps, workers=2)
        big = ray_run(tenfold(cache, f"{root}/cache10"), Path(root) / "run10", args.steps, workers=1)
    result = {
        "cores": cores, "bare_samples_per_s": round(bare, 1), "bare_runs": [round(b, 1) for b in bare_runs],
        "ray_1_worker_samples_per_s": round(one["samples_per_s"], 1),
        "ray_overhead": round(1 - one["samples_per_s"] / bare, 3),
        "bare_spare_core_samples_per_s": round(bare_spare, 1),
        "ray_1_worker_spare_core_samples_per_s": round(one_spare["samples_per_s"], 1),
        "ray_overhead_spare_core": round(1 - one_spare["samples_per_s"] / bare_spare, 3),
        "ray_2_workers_samples_per_s": round(two["samples_per_s"], 1),
        "scaling_2_over_1": round(two["samples_per_s"] / one["samples_per_s"], 2),
        "ray_1_worker_10x_cache_samples_per_s": round(big["samples_per_s"], 1),
        "ray_overhead_10x_cache": round(1 - big["samples_per_s"] / bare, 3),
        "peak_rss_mb_1x_cache": one["peak_rss_mb"], "peak_rss_mb_10x_cache": big["peak_rss_mb"],
    }
    print(f"bare torch loop           : {bare:7.1f} samples/s  (mean of {', '.join(f'{b:.1f}' for b in bare_runs)})")
    print(f"Ray Train, 1 worker       : {one['samples_per_s']:7.1f} samples/s  (overhead {result['ray_overhead']:.1%})")
    print(f"bare, a core left spare   : {bare_spare:7.1f} samples/s  ({max(1, cores - 1)} torch thread(s))")
    print(f"Ray Train, 1 worker, same : {one_spare['samples_per_s']:7.1f} samples/s  (overhead "
          f"{result['ray_overhead_spare_core']:.1%}: Ray's processes have the spare core)")
    print(f"Ray Train, 1 worker, 10x  : {big['samples_per_s']:7.1f} samples/s  (overhead "
          f"{result['ray_overhead_10x_cache']:.1%}: epochs 10x longer)")
    print(f"Ray Train, 2 workers      : {two['samples_per_s']:7.1f} samples/s  (x{result['scaling_2_over_1']} of 1 worker)")
    print(f"worker peak RSS, 1x cache : {one['peak_rss_mb']:7.1f} MB")
    print(f"worker peak RSS, 10x cache: {big['peak_rss_mb']:7.1f} MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
