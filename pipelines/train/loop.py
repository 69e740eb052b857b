"""The Ray Train worker loop: predictor + y-encoder on cached S_V, bi-directional InfoNCE.

Design choices:
- Streaming: each worker iterates its shard of the cache (`get_dataset_shard`), collating and
  tokenising in the batch pipeline; nothing loads the dataset whole.
- One global InfoNCE batch: features are all-gathered across workers (model.loss), DDP averages.
- The data streams in passes (pipelines.train.data): one Ray Data execution each, one epoch
  by default (--epochs-per-pass). Checkpoints hold the trainable weights, optimizer, scheduler, step
  and the data position (pass, batches consumed in it); a restarted worker group resumes exactly
  there. The data order is a function of the seed and the pass, so resuming replays the same order.
- Only rank 0 talks to MLflow; every rank reports to Ray Train together (a barrier).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass

import mlflow
import numpy as np
import ray.train
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from model.build import build_vljepa
from model.export import load_model
from model.loss import InfoNCELoss
from model.optim import apply_update, build_optimizer
from model.precision import device_autocast
from model.presets import get_preset
from model.vljepa import VLJepa
from ops.evaluate.held_out_rows import HeldOutRows
from ops.evaluate.text_triplets import TextTriplet, parse_fields, read_triplet_files, triplet_accuracy
from ops.evaluate.zero_shot import evaluate_chunks
from ops.train.collate import Collate
from pipelines.models.source import resolve_model_dir
from pipelines.train.config import TrainConfig
from pipelines.train.preemption import PreemptionWatch
from pipelines.train.worker import (
    Progress,
    batches_from,
    checkpoint_when_due,
    record_start,
    restore_optimizer,
    restore_state,
    setup_worker,
    start_tracking,
    stop_tracking,
)


def initial_model(config: TrainConfig) -> VLJepa:
    if config.init_model:  # resolved on this process's node: a driver's download is not on the others
        return load_model(resolve_model_dir(config.init_model, config.init_model_tracking_uri,
                                            config.init_model_registry_uri))
    return build_vljepa(get_preset(config.preset))


def trainable_state(model: VLJepa) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: VLJepa, state: dict[str, torch.Tensor]) -> None:
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        raise ValueError(f"checkpoint does not match the model: missing {sorted(expected - set(state))[:5]}, "
                         f"unexpected {sorted(set(state) - expected)[:5]}")
    model.load_state_dict(state, strict=False)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warmup, then constant (pretraining) or cosine annealing to zero (SFT)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.spec.schedule == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def held_out_metrics(model, config: TrainConfig, held_out: HeldOutRows | None,
                     triplets: list[TextTriplet] | None) -> dict[str, float]:
    """Rank 0's evaluation, as MLflow metrics: the held-out cache's tasks (eval.classification.top1,
    ...) and the y-encoder's hard-negative triplets (eval.text_triplets.accuracy, per category)."""
    model.eval()
    result = evaluate_chunks(model, held_out.chunks(), config.spec.caption_prompt) if held_out is not None else {}
    if triplets:
        result["text_triplets"] = triplet_accuracy(model.embed_texts, triplets)
    return flat_metrics(result)


def flat_metrics(result: dict, prefix: str = "eval") -> dict[str, float]:
    flat = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update(flat_metrics(value, f"{prefix}.{key}"))
        elif isinstance(value, (int, float)):
            flat[f"{prefix}.{key}"] = float(value)
    return flat


@dataclass
class WithEpoch(NumpyBatchCollateFn):
    """Collation that also hands over each row's epoch (the loop logs it; the model never sees it).
    A NumpyBatchCollateFn: Ray Data >= 2.47 deprecates plain functions as `collate_fn`."""

    collate: Collate

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        # a copy: Ray Data's arrays are read-only views, which torch.from_numpy warns about
        return {**self.collate(batch), "epoch": torch.from_numpy(np.array(batch["epoch"], dtype=np.int64))}


def collation(model: VLJepa, config: TrainConfig) -> WithEpoch:
    """The batch pipeline's collation for this model and stage."""
    return WithEpoch(Collate(
        target_tokenizer=model.target_tokenizer, query_tokenizer=model.query_tokenizer,
        max_target_tokens=model.config.y_encoder.max_tokens, max_query_tokens=model.config.predictor.max_query_tokens,
        use_query=config.spec.use_query, caption_prompt=config.spec.caption_prompt,
    ))


def training_setup(config: TrainConfig, device: torch.device, state: dict | None):
    """The model on `device`, its optimizer and schedule, restored from a checkpoint's `state` (with
    the RNG) when resuming; -> (model, optimizer, scheduler, (step, pass, batches consumed)).

    The model is on its device before the optimizer exists: Optimizer.load_state_dict puts each of
    AdamW's moments on its parameter's device as it is then, and a model moved afterwards left them
    on the CPU, so a resumed run on a GPU failed at its first step (tensors on different devices)."""
    model = initial_model(config).to(device)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    if state is None:
        return model, optimizer, scheduler, (0, 0, 0)
    load_trainable_state(model, state["model"])
    return model, optimizer, scheduler, restore_optimizer(optimizer, scheduler, state)


def train_loop_per_worker(config_dict: dict) -> None:
    config = TrainConfig.from_dict(config_dict)
    rank, world, device = setup_worker(config.out, config.seed, config.threads_per_worker)
    model, optimizer, scheduler, (step, data_pass, consumed) = training_setup(config, device, restore_state())
    record_start(config.out, rank, step)
    ddp_model = ray.train.torch.prepare_model(model, move_to_device=False) if world > 1 else model
    loss_fn = InfoNCELoss()
    autocast = device_autocast(device)

    start_tracking(rank, config.tracking_uri, config.mlflow_run_id)
    held_out = HeldOutRows(config.eval_cache, config.eval_max_samples) if rank == 0 and config.eval_cache else None
    triplets = (read_triplet_files(config.eval_text_triplets, parse_fields(config.eval_triplet_fields))
                if rank == 0 and config.eval_text_triplets else None)

    shard = ray.train.get_dataset_shard("train")
    collate_with_epoch = collation(model, config)

    def make_batches(data_pass: int):
        return shard.iter_torch_batches(
            batch_size=config.batch_size, collate_fn=collate_with_epoch, drop_last=True, prefetch_batches=2,
            local_shuffle_buffer_size=config.shuffle_buffer, local_shuffle_seed=config.seed * 1000 + data_pass)

    window_start, window_samples = time.perf_counter(), 0
    metrics: dict[str, float] = {}
    preemption = PreemptionWatch(config.preemption_check_s, start_step=step)
    progress = Progress("train", config.steps, step, rank)
    model.train()
    batches = batches_from(make_batches, data_pass, consumed,
                           "the training data yields no full batch: lower --batch-size or add data")
    for data_pass, consumed, batch in (batches if step < config.steps else ()):
        epoch = data_pass * config.epochs_per_pass + int(batch.pop("epoch").max())
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            predicted, target = ddp_model(**batch)
            loss = loss_fn(predicted, target, model.scale())
        (loss / config.grad_accum).backward()
        window_samples += batch["s_v"].shape[0] * world
        if consumed % config.grad_accum:
            continue
        grad_norm = apply_update(optimizer, scheduler, config.grad_clip)
        step += 1

        if rank == 0 and (step % config.log_every == 0 or step == config.steps):
            elapsed = time.perf_counter() - window_start
            metrics = {"loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0],
                       "temperature": float(1.0 / model.scale().detach()), "grad_norm": float(grad_norm),
                       "samples_per_s": window_samples / max(elapsed, 1e-9), "epoch": epoch,
                       "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            mlflow.log_metrics(metrics, step=step)
            progress.window(step, metrics)
            window_start, window_samples = time.perf_counter(), 0
        if rank == 0 and (held_out is not None or triplets) and (
                (config.eval_every and step % config.eval_every == 0) or step == config.steps):
            evaluation = held_out_metrics(model, config, held_out, triplets)
            mlflow.log_metrics(evaluation, step=step)
            progress.evaluation(step, evaluation)
            metrics.update(evaluation)
            model.train()
        checkpoint_when_due(step, step % config.checkpoint_every == 0 or step == config.steps, preemption,
                            lambda: {"model": trainable_state(model), "optimizer": optimizer.state_dict(),
                                     "scheduler": scheduler.state_dict(), "step": step, "pass": data_pass,
                                     "epoch": epoch, "consumed": consumed, "rng": torch.get_rng_state()},
                            metrics, rank, progress)
        if step >= config.steps:
            break
    if held_out is not None:
        held_out.close()
    stop_tracking(rank)

