"""What looking for a preemption notice costs a training loop (pipelines/train/preemption.py).

A Ray Train run of --workers workers does --steps steps of a fixed CPU workload (a matmul chain of
about --step-ms milliseconds, one torch thread: a stand-in for a step; what matters is the time
between questions) and calls `PreemptionWatch.notice` after each, as pipelines/train/loop.py does.
Three settings in the same run: never asking (the baseline), asking about every 2 s (the default
--preemption-check-s), and asking at every step (what a fixed per-step check would cost). Reported:
steps/s of each against the baseline, the questions asked, and the time per question.

    python -m benchmarks.preemption_check [--workers 1 2] [--steps 1000] [--step-ms 20]
"""

from __future__ import annotations

import argparse
import json
import time

SETTINGS = {"never": 0.0, "every 2 s (default)": 2.0, "every step": 1e-9}


def loop(config: dict) -> dict:
    import ray.train
    import ray.train.collective
    import torch

    from pipelines.train.preemption import PreemptionWatch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    a = torch.randn(config["size"], config["size"])
    watch = PreemptionWatch(config["interval_s"])
    asking_s = 0.0
    ray.train.collective.barrier()
    start = time.perf_counter()
    for step in range(1, config["steps"] + 1):
        for _ in range(config["repeats"]):
            a = torch.tanh(a @ a)
        before, questions = time.perf_counter(), watch.questions
        watch.notice(step)
        if watch.questions != questions:
            asking_s += time.perf_counter() - before
    elapsed = time.perf_counter() - start
    return {"steps_per_s": config["steps"] / elapsed, "asked": watch.questions,  # rank 0's: Result.return_value
            "ms_per_question": 1000 * asking_s / max(watch.questions, 1)}


def calibrated_size(step_ms: float) -> tuple[int, int]:
    """(matrix size, matmuls per step) for about `step_ms` of one thread."""
    import torch

    torch.set_num_threads(1)
    size = 256
    a = torch.randn(size, size)
    for _ in range(20):  # warm-up: the first products pay for allocation and thread start
        a = torch.tanh(a @ a)
    start = time.perf_counter()
    for _ in range(50):
        a = torch.tanh(a @ a)
    per_matmul_ms = (time.perf_counter() - start) / 50 * 1000
    return size, max(1, round(step_ms / per_matmul_ms))


def run(workers: int, interval_s: float, steps: int, size: int, repeats: int) -> dict:
    import tempfile

    import ray.train
    import ray.train.collective
    from ray.train.torch import TorchTrainer

    with tempfile.TemporaryDirectory(prefix="preemption-check-") as storage:
        result = TorchTrainer(
            loop, train_loop_config={"interval_s": interval_s, "steps": steps, "size": size, "repeats": repeats},
            scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(storage_path=storage, name="bench"),
        ).fit()
    return result.return_value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--step-ms", type=float, default=20.0)
    args = parser.parse_args(argv)

    import ray

    size, repeats = calibrated_size(args.step_ms)
    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    rows = []
    for workers in args.workers:
        measured = {name: run(workers, interval, args.steps, size, repeats) for name, interval in SETTINGS.items()}
        baseline = measured["never"]["steps_per_s"]
        for name, metrics in measured.items():
            row = {"workers": workers, "asking": name, "steps_per_s": round(metrics["steps_per_s"], 1),
                   "vs_never": round(metrics["steps_per_s"] / baseline, 3), "questions": metrics["asked"],
                   "ms_per_question": round(metrics["ms_per_question"], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    ray.shutdown()
    print(json.dumps({"steps": args.steps, "step_ms": args.step_ms, "matmuls_per_step": repeats, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
