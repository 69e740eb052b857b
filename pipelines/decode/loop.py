"""The Ray Train worker loop of the Y-decoder: caption texts (or cached clips) -> embeddings ->
noisy embeddings -> teacher-forced cross-entropy of the caption.

Design choices:
- The VL-JEPA model is frozen here and only supplies embeddings; the whole decoder (mapper + LM)
  trains. In text mode a caption's S_Y is computed once per worker and memoised: captions repeat
  across epochs, and the noise (the part that changes) is added afterwards.
- Same streaming, checkpoint (with data position), restart and MLflow rules as the main loop.
"""

from __future__ import annotations

import math
import time

import mlflow
import ray.train
import torch
import torch.nn.functional as F

from model.config import VLJepaConfig
from model.export import load_model, read_manifest
from model.optim import apply_update
from model.presets import y_decoder_preset
from model.vljepa import VLJepa
from model.y_decoder import YDecoder, YDecoderConfig, add_embedding_noise
from model.y_decoder_export import load_y_decoder
from ops.evaluate.captioning import caption_quality
from ops.evaluate.zero_shot import load_rows
from ops.train.collate import pad_visual, row_features
from pipelines.decode.config import DecoderTrainConfig
from pipelines.models.source import resolve_model_dir
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


def starting_lm(config: DecoderTrainConfig, model_config: VLJepaConfig) -> YDecoderConfig | None:
    """The decoder config a fresh run starts from (its LM checkpoint: --decoder-checkpoint, else the
    model preset's); None when the run continues a trained decoder (--init-decoder)."""
    if config.init_decoder:
        return None
    preset = y_decoder_preset(model_config)
    if config.decoder_checkpoint:
        preset.checkpoint, preset.num_layers = config.decoder_checkpoint, None
    preset.prefix_length, preset.noise_norm = config.prefix_length, config.noise_norm
    return preset


def initial_decoder(config: DecoderTrainConfig, model_config: VLJepaConfig) -> YDecoder:
    start = starting_lm(config, model_config)
    return YDecoder.from_pretrained(start) if start is not None else load_y_decoder(config.init_decoder)


def lr_factor(step: int, config: DecoderTrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class EmbeddingSource:
    """Batch rows -> unit embeddings: S_Y of the captions (memoised) or Ŝ_Y of the cached clips.

    In mode "predicted" with text_mix > 0, each row independently takes its caption's S_Y with
    probability text_mix: the fine-tune then keeps seeing exact embeddings of the captions and does
    not forget how to read them (held-out ceiling 6.87 CIDEr with half the rows, 5.43 with none;
    docs/decoding.md). Drawn from torch's CPU generator, whose state the checkpoints carry, so a
    resumed run draws the same rows."""

    def __init__(self, model: VLJepa, mode: str, caption_prompt: str, text_mix: float = 0.0):
        self.model, self.mode, self.caption_prompt, self.text_mix = model, mode, caption_prompt, text_mix
        self.memo: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, batch: dict, device: torch.device) -> torch.Tensor:
        texts = [str(t) for t in batch["target"]]
        if self.mode != "predicted":
            return self.text_embeddings(texts, device)
        s_v, visual_mask = pad_visual(row_features(batch["s_v_shape"], batch["s_v"]))
        predicted = self.model.embed_visual(s_v.to(device), [self.caption_prompt] * len(texts), visual_mask.to(device))
        if not self.text_mix:
            return predicted
        use_text = (torch.rand(len(texts)) < self.text_mix).to(device)
        exact = self.text_embeddings(texts, device).to(predicted.dtype)
        return torch.where(use_text[:, None], exact, predicted)

    def text_embeddings(self, texts: list[str], device: torch.device) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            for text, embedding in zip(missing, self.model.embed_texts(missing)):
                self.memo[text] = embedding
        return torch.stack([self.memo[t] for t in texts]).to(device)


def decoder_setup(config: DecoderTrainConfig, model_config: VLJepaConfig, device: torch.device, state: dict | None):
    """The decoder on `device`, its optimizer and schedule, restored from a checkpoint's `state` (with
    the RNG) when resuming; -> (decoder, optimizer, scheduler, (step, pass, batches consumed)). On its
    device before the optimizer exists, as pipelines.train.loop.training_setup says why."""
    decoder = initial_decoder(config, model_config).to(device)
    decoder.config.noise_norm = config.noise_norm
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    if state is None:
        return decoder, optimizer, scheduler, (0, 0, 0)
    decoder.load_state_dict(state["decoder"])
    return decoder, optimizer, scheduler, restore_optimizer(optimizer, scheduler, state)


def decoder_loop_per_worker(config_dict: dict) -> None:
    config = DecoderTrainConfig.from_dict(config_dict)
    rank, world, device = setup_worker(config.out, config.seed, config.threads_per_worker)
    model_dir = resolve_model_dir(config.model, config.model_tracking_uri, config.model_registry_uri)  # on this worker's node
    model = load_model(model_dir).eval().requires_grad_(False).to(device)
    caption_prompt = read_manifest(model_dir)["metadata"].get("caption_prompt", "")
    decoder, optimizer, scheduler, (step, data_pass, consumed) = decoder_setup(config, model.config, device,
                                                                              restore_state())
    record_start(config.out, rank, step)
    ddp_decoder = ray.train.torch.prepare_model(decoder, move_to_device=False) if world > 1 else decoder
    embeddings_of = EmbeddingSource(model, config.mode, caption_prompt, config.text_mix)

    start_tracking(rank, config.tracking_uri, config.mlflow_run_id)
    shard = ray.train.get_dataset_shard("train")
    window_start, window_samples, metrics = time.perf_counter(), 0, {}
    preemption = PreemptionWatch(config.preemption_check_s, start_step=step)
    decoder.train()

    def make_batches(data_pass: int):
        return shard.iter_batches(batch_size=config.batch_size, batch_format="numpy", drop_last=True,
                                  local_shuffle_buffer_size=config.shuffle_buffer,
                                  local_shuffle_seed=config.seed * 1000 + data_pass)

    progress = Progress("train-decoder", config.steps, step, rank)
    batches = batches_from(make_batches, data_pass, consumed,
                           "the cache yields no full batch of captions: lower --batch-size or add data")
    for data_pass, consumed, batch in (batches if step < config.steps else ()):
        epoch = data_pass * config.epochs_per_pass + int(batch["epoch"].max())
        clean = F.normalize(embeddings_of(batch, device).float(), dim=-1)
        noisy = add_embedding_noise(clean, config.noise_norm)
        ids, mask = decoder.tokenize_targets([str(t) for t in batch["target"]])
        loss = ddp_decoder(noisy, ids.to(device), mask.to(device))
        loss.backward()
        grad_norm = apply_update(optimizer, scheduler, config.grad_clip)
        step += 1
        window_samples += len(ids) * world
        if rank == 0 and (step % config.log_every == 0 or step == config.steps):
            elapsed = time.perf_counter() - window_start
            metrics = {"loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                       "samples_per_s": window_samples / max(elapsed, 1e-9), "epoch": epoch}
            mlflow.log_metrics(metrics, step=step)
            progress.window(step, metrics)
            window_start, window_samples = time.perf_counter(), 0
        if rank == 0 and step == config.steps and config.eval_cache:
            quality = caption_quality(model, decoder, load_rows(config.eval_cache, config.eval_max_samples),
                                      caption_prompt, num_beams=config.num_beams, seed=config.seed)
            scores = {f"eval.{k}": v for k, v in quality.items() if k.startswith("cider")}
            mlflow.log_metrics(scores, step=step)
            metrics.update(scores)
            print(f"train-decoder: CIDEr {scores} on {quality['num_samples']} held-out captions; "
                  f"e.g. {quality['examples']}")
            decoder.train()
        checkpoint_when_due(step, step % config.checkpoint_every == 0 or step == config.steps, preemption,
                            lambda: {"decoder": {k: v.detach().cpu() for k, v in decoder.state_dict().items()},
                                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                     "step": step, "pass": data_pass, "epoch": epoch, "consumed": consumed,
                                     "rng": torch.get_rng_state()},
                            metrics, rank, progress)
        if step >= config.steps:
            break
    stop_tracking(rank)
