"""One training step of the predictor + y-encoder, bf16 autocast vs float32, on this machine's device.

The step is the Ray Train worker's (pipelines/train/loop.py): the model in train mode, the
training forward from cached S_V under `model.precision.device_autocast`, InfoNCE, and the shared
clip + AdamW + schedule update (`model.optim.apply_update`). No Ray and no data loading: the batch
is synthetic and already on the device, so this is the step's compute alone, the ceiling a
worker's data pipeline has to keep up with. Baseline in the same run: the same step in float32.

S_V has the preset's token count for a clip (tokens x x-encoder width); targets and queries are
captions and questions tokenised to the preset's limits. On a GPU, peak memory per mode is
reported too.

    python -m benchmarks.train_step --preset paper-random --batch-size 64   # a GPU node
    python -m benchmarks.train_step --preset minilm --batch-size 32 --steps 10   # runs on CPU too
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from model.build import build_vljepa
from model.loss import InfoNCELoss
from model.optim import apply_update, build_optimizer
from model.precision import device_autocast
from model.presets import get_preset

CAPTIONS = ["a red ball moves left", "a blue cube grows", "a green cone moves up and to the right",
            "a yellow ring spins slowly in the centre", "two shapes swap places"]
QUERY = "What happens in this clip, and which way does the object move?"


def synthetic_batch(model, batch_size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    config = model.config.x_encoder
    tokens = model.x_encoder.num_tokens(config.num_frames, config.image_size)
    generator = torch.Generator().manual_seed(seed)
    s_v = torch.randn(batch_size, tokens, model.x_encoder.hidden_size, generator=generator)
    targets = [CAPTIONS[i % len(CAPTIONS)] + f" (clip {i})" for i in range(batch_size)]
    target_ids, target_mask = model.tokenize_targets(targets)
    query_ids, query_mask = model.tokenize_queries([QUERY] * batch_size)
    batch = {"s_v": s_v, "visual_mask": torch.ones(batch_size, tokens, dtype=torch.int64),
             "target_ids": target_ids, "target_mask": target_mask, "query_ids": query_ids, "query_mask": query_mask}
    return {k: v.to(device) for k, v in batch.items()}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(model, batch: dict, device: torch.device, bf16: bool, steps: int, warmup: int) -> dict:
    optimizer = build_optimizer(model, 1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loss_fn = InfoNCELoss()
    model.train()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for step in range(warmup + steps):
        _synchronize(device)
        started = time.perf_counter()
        with device_autocast(device, bf16):
            predicted, target = model(**batch)
            loss = loss_fn(predicted, target, model.scale())
        loss.backward()
        apply_update(optimizer, scheduler, grad_clip=1.0)
        _synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - started)
            losses.append(float(loss.detach()))
    step_s = statistics.median(times)
    result = {"bf16": bf16, "step_ms": round(1000 * step_s, 2), "samples_per_s": round(len(batch["s_v"]) / step_s, 1),
              "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4)}
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del optimizer  # its state is most of the memory: free it before the other mode
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the float32 baseline is float32, not TF32
    config = get_preset(args.preset)
    results = []
    for bf16 in ((False, True) if device.type == "cuda" else (False,)):
        torch.manual_seed(0)
        model = build_vljepa(config).to(device)  # fresh weights per mode: both start from the same state
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        batch = synthetic_batch(model, args.batch_size, device)
        results.append(measure(model, batch, device, bf16, args.steps, args.warmup))
        del model, batch
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{args.preset}: {trainable / 1e6:.0f}M trainable parameters, batch {args.batch_size}, on {name}")
    for r in results:
        memory = f", peak {r['peak_memory_gib']} GiB" if "peak_memory_gib" in r else ""
        print(f"  {'bf16 autocast' if r['bf16'] else 'float32':<13}: {r['step_ms']:8.1f} ms/step, "
              f"{r['samples_per_s']:8.1f} samples/s{memory} (loss {r['loss_first']} -> {r['loss_last']})")
    speedup = results[0]["step_ms"] / results[-1]["step_ms"] if len(results) == 2 else None
    if speedup is not None:
        print(f"  bf16 / float32 speed: x{speedup:.2f}")
    print(json.dumps({"preset": args.preset, "device": name, "batch_size": args.batch_size,
                      "trainable_params": trainable, "results": results,
                      "bf16_speedup": round(speedup, 2) if speedup else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
