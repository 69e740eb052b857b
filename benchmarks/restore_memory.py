"""Memory a Ray Train worker holds while it restores a checkpoint: the state read into memory
(`torch.load`, what restore_state did before) against mapped from its file (checkpoint_files.
load_state, what pipelines/train/worker.restore_state does now), in the same run.

A checkpoint like training's (pipelines/train/loop.py: trainable weights, AdamW's two moments,
schedule, RNG and position) is written for a model of --params million float32 weights (a stack
of square linear layers; the loading path does not care what the layers are). Then a fresh
process per mode builds the model and its optimizer, as a resuming worker does, and reports its
anonymous resident memory (RssAnon: what the process holds itself, not page cache the kernel can
drop) after loading the state, after restoring the model and optimizer from it (the state then
released), and after the first optimizer step, each above what it held before loading; and its
peak resident memory up to the restore (VmHWM: the model, and mapped file pages once read). The restored weights and moments are checked equal to the saved ones.

On a GPU worker the state only passes through the CPU on its way to the device, so the first
column is what each worker of a node holds at once while all of them restore.

    python -m benchmarks.restore_memory [--params 200] [--width 2048]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipelines.train.checkpoints import load_state, write_state
from pipelines.train.config import STATE_FILE
from pipelines.train.worker import restore_optimizer

MODES = ("read", "mapped")


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def model_and_optimizer(params_m: int, width: int, seed: int = 0):
    torch.manual_seed(seed)
    layers = max(1, round(params_m * 1e6 / (width * width)))
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False) for _ in range(layers)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def one_step(model, optimizer, scheduler) -> None:
    for parameter in model.parameters():  # gradients without a forward pass: the step is what matters here
        parameter.grad = torch.full_like(parameter, 1e-3)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def write_checkpoint(directory: Path, params_m: int, width: int) -> int:
    model, optimizer, scheduler = model_and_optimizer(params_m, width)
    one_step(model, optimizer, scheduler)  # AdamW's moments exist after a step
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": torch.get_rng_state(), "step": 1, "pass": 0, "consumed": 1}
    write_state(state, directory)
    return (directory / STATE_FILE).stat().st_size


def child(mode: str, directory: Path, params_m: int, width: int) -> dict:
    model, optimizer, scheduler = model_and_optimizer(params_m, width, seed=1)  # other weights than saved
    before = status_mb("RssAnon")
    started = time.perf_counter()
    state = torch.load(directory / STATE_FILE, weights_only=False) if mode == "read" else load_state(directory)
    loaded = status_mb("RssAnon") - before
    model.load_state_dict(state["model"])
    restore_optimizer(optimizer, scheduler, state)
    restore_s = time.perf_counter() - started
    del state
    restored = status_mb("RssAnon") - before
    peak = status_mb("VmHWM")  # before the check below maps and reads the whole file again
    saved = torch.load(directory / STATE_FILE, mmap=True, weights_only=False)  # to check against, mapped
    same = all(torch.equal(p, saved["model"][name]) for name, p in model.state_dict().items()) and all(
        torch.equal(optimizer.state[p]["exp_avg_sq"], saved["optimizer"]["state"][i]["exp_avg_sq"])
        for i, p in enumerate(model.parameters()))
    del saved
    one_step(model, optimizer, scheduler)
    return {"mode": mode, "anon_after_load_mb": round(loaded), "anon_after_restore_mb": round(restored),
            "anon_after_first_step_mb": round(status_mb("RssAnon") - before), "peak_rss_mb": round(peak),
            "restore_s": round(restore_s, 2), "restored_equal": same}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=int, default=200, help="million float32 weights")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--child", choices=MODES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, Path(args.dir), args.params, args.width)))
        return 0

    with tempfile.TemporaryDirectory(prefix="restore-memory-") as directory:
        size = write_checkpoint(Path(directory), args.params, args.width)
        print(f"checkpoint: {size / 2**20:.0f} MB ({args.params}M weights and AdamW's two moments)", flush=True)
        results = []
        for mode in MODES:  # a fresh process each: a process's memory peak cannot be reset
            out = subprocess.run([sys.executable, "-m", "benchmarks.restore_memory", "--child", mode, "--dir", directory,
                                  "--params", str(args.params), "--width", str(args.width)],
                                 check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    assert all(r["restored_equal"] for r in results), "a restore did not give back the saved state"
    read, mapped = results
    print(json.dumps({"state_mb": round(size / 2**20), "params_m": args.params, "runs": results,
                      "peak_rss_read_over_mapped": round(read["peak_rss_mb"] / mapped["peak_rss_mb"], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
