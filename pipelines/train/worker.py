"""What every Ray Train worker loop of this project shares: process setup, MLflow on rank 0,
restoring a checkpoint, and reporting one.

A checkpoint is one `STATE_FILE` (torch.save of a dict: trainable weights, optimizer, scheduler,
step, data position, RNG) and its record (pipelines/train/checkpoints.py); the loops decide what
goes in it, this module how it travels.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import mlflow
import ray
import ray.train
import ray.train.torch
import torch

from pipelines.train.checkpoints import load_state, write_state
from pipelines.train.preemption import PreemptionWatch, describe, describe_last


def setup_worker(out: str, seed: int, threads_per_worker: int) -> tuple[int, int, torch.device]:
    """Seed, pick the device and CPU threads, record this worker's pid; -> (rank, world, device)."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    pid_dir = Path(out) / "pids"
    pid_dir.mkdir(parents=True, exist_ok=True)
    (pid_dir / f"rank{rank}.pid").write_text(str(os.getpid()))  # lets operators (and tests) find workers
    torch.manual_seed(seed)
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(threads_per_worker or max(1, (os.cpu_count() or 1) // world))
    return rank, world, device


def record_start(out: str, rank: int, step: int) -> None:
    """One line per worker start in OUT/pids/starts.log: restarts, placement, and the step each
    (re)start trains on from (0, or its checkpoint's)."""
    with open(Path(out) / "pids" / "starts.log", "a") as log:
        log.write(f"{time.time():.3f} rank={rank} pid={os.getpid()} node={ray.get_runtime_context().get_node_id()} "
                  f"step={step}\n")


def checkpoint_when_due(step: int, periodic: bool, preemption: PreemptionWatch, state: Callable[[], dict],
                        metrics: dict, rank: int, progress: Progress | None = None) -> None:
    """After each step: report a checkpoint (`state()`) when one is due: the periodic one, one on a
    new preemption notice, or the last one before a notice's deadline. One report serves them all."""
    notice = preemption.notice(step)  # collectives: every rank calls both at every step
    last = preemption.last_call(step)
    if notice is None and last is None and not periodic:
        return
    started = time.monotonic()
    report_state(state(), metrics, rank)
    preemption.checkpointed(time.monotonic() - started)
    if progress is not None:
        progress.checkpoint(step)
    if notice is not None:
        announce_preemption(describe(notice, step), rank)
    if last is not None:
        announce_preemption(describe_last(last, preemption.noticed_step, step, last.deadline_ms / 1000 - time.time()),
                            rank)


def clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def console(line: str) -> None:
    """A line on the worker's own stdout, which Ray forwards to the driver's console once. Not print:
    in a Ray Train worker print is patched to log as well as write, and each line came out twice."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


class Progress:
    """Rank 0's console: one line per logging window (step / total, epoch, loss, lr, grad norm,
    samples/s, elapsed and ETA), evaluation results as a small table, a checkpoint in one short line.
    The ETA is the remaining steps at this start's mean step time (a restart measures from its own
    first step, not the run's)."""

    def __init__(self, verb: str, total_steps: int, start_step: int, rank: int):
        self.verb, self.total, self.start_step, self.shown = verb, total_steps, start_step, rank == 0
        self.started = time.perf_counter()

    def line(self, step: int, metrics: dict) -> str:
        elapsed = time.perf_counter() - self.started
        eta = elapsed / max(step - self.start_step, 1) * (self.total - step)
        width = len(str(self.total))
        return (f"{self.verb}: step {step:>{width}}/{self.total} epoch {int(metrics['epoch'])} "
                f"loss {metrics['loss']:.4f} lr {metrics['lr']:.2e} grad {metrics['grad_norm']:.3g} "
                f"{metrics['samples_per_s']:.1f} samples/s elapsed {clock(elapsed)} eta {clock(eta)}")

    def window(self, step: int, metrics: dict) -> None:
        if self.shown:
            console(self.line(step, metrics))

    def evaluation(self, step: int, scores: dict) -> None:
        if self.shown:
            rows = "\n".join(f"  {name.removeprefix('eval.'):<40} {value:.4f}" for name, value in sorted(scores.items()))
            console(f"{self.verb}: evaluation at step {step}\n{rows}")

    def checkpoint(self, step: int) -> None:
        if self.shown:
            console(f"{self.verb}: checkpoint at step {step}")


def announce_preemption(line: str, rank: int) -> None:
    """Rank 0 says which nodes go and at which step it checkpointed: in the job's log and as the
    MLflow run's tag `preemption.last` (its history: one line per notice in the log)."""
    if rank != 0:
        return
    console(line)
    mlflow.set_tag("preemption.last", line)


def start_tracking(rank: int, tracking_uri: str, run_id: str) -> None:
    """Only rank 0 logs, into the run the driver created (a restart continues it)."""
    if rank == 0:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.start_run(run_id=run_id, log_system_metrics=True)


def stop_tracking(rank: int) -> None:
    if rank == 0:
        mlflow.end_run()


def restore_state() -> dict | None:
    """The state of the last checkpoint Ray Train hands this worker group, or None on a fresh start.

    Mapped from the file, not read into memory (checkpoint_files.load_state): every worker of a node
    restores at once, and a paper-size state is ~10 GB, so reading it gave a node of 8 GPU workers
    ~80 GB of CPU memory at once for tensors that only pass through on their way to the GPU
    (benchmarks/restore_memory.py). Pages are read as the weights and moments are copied to their
    device; on a CPU the moments stay mapped, copy-on-write, until the first step writes them. The
    mapping outlives the download directory Ray removes on leaving `as_directory` (an unlinked
    file stays readable while mapped)."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return load_state(directory)


def restore_optimizer(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                      state: dict) -> tuple[int, int, int]:
    """Restores the optimizer, its schedule and the RNG from a checkpoint's `state`; -> (step, pass,
    batches consumed). The optimizer's parameters must already be on their device (see
    pipelines.train.loop.training_setup)."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return state["step"], state["pass"], state["consumed"]


def report_state(state: dict, metrics: dict, rank: int) -> None:
    """Every rank reports (a barrier); rank 0 attaches the checkpoint."""
    payload = {"step": state["step"], **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    if rank != 0:
        ray.train.report(payload)
        return
    with tempfile.TemporaryDirectory() as directory:
        write_state(state, Path(directory))
        ray.train.report(payload, checkpoint=ray.train.Checkpoint.from_directory(directory))


def batches_from(make_batches: Callable[[int], Iterable], data_pass: int, consumed: int,
                 empty_message: str) -> Iterator[tuple[int, int, object]]:
    """(pass, batches consumed in it, batch), from a saved position on, pass after pass, forever.

    `make_batches(pass)` iterates one pass of this worker's shard (a fixed order given the pass:
    the local shuffle is seeded by it), so a restarted worker skips exactly what it had trained on.
    """
    while True:
        seen = 0
        for batch in make_batches(data_pass):
            seen += 1
            if seen <= consumed:
                continue  # resuming: trained on before the restart
            yield data_pass, seen, batch
        if seen == 0:
            raise ValueError(empty_message)
        data_pass, consumed = data_pass + 1, 0
