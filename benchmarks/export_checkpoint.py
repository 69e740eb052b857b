"""`vljepa export --run` of a run whose checkpoints are on S3: what it reads, holds and leaves.

A run's storage on S3 (moto's server on 127.0.0.1) holds its kept checkpoints (--keep-checkpoints,
default 2), each a state of --params M float32 weights and AdamW's two moments of the same size
(the paper's run: ~792M trainable, a ~9.5 GB state). Each way runs in a fresh process, alternating
for --rounds rounds (medians):
  before  the previous code (kept here as the baseline): every checkpoint's state read whole from
          S3 to learn its step, the highest one fetched again into a temporary directory that was
          never removed, then loaded whole;
  now     pipelines/train/checkpoints.py: the step from each checkpoint's small record, the highest
          fetched into a temporary directory removed after the export, its file mapped, so only
          the weights are read.
Both then copy the weights into a tensor of their size (export's load_state_dict).
Reported: seconds, bytes over the loopback interface (the S3 requests and responses), peak RSS
over the process's RSS before (VmHWM; modules imported, the S3 client made, the weights' tensor
allocated), and what each left in the temporary directory. Linux only.

    python -m benchmarks.export_checkpoint [--params 32] [--checkpoints 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.cache_memory import status_kb

BUCKET = "vljepa-bench"


def loopback_bytes() -> int:
    """Bytes received on the loopback interface so far: during an export, its S3 requests and
    moto's responses (the benchmark's own process waits meanwhile)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            return int(counters.split()[0])
    raise RuntimeError("no loopback interface in /proc/net/dev")


# -- the previous code, the baseline ----------------------------------------------------------------
def export_before(storage: str, weights: torch.Tensor) -> int:
    import fsspec

    from pipelines.train.config import STATE_FILE

    fs, path = fsspec.core.url_to_fs(storage)
    candidates = [p.rsplit("/", 1)[0] for p in fs.glob(f"{path}/**/{STATE_FILE}")]
    steps = {}
    for directory in candidates:
        with fs.open(f"{directory}/{STATE_FILE}", "rb") as handle:
            steps[directory] = int(torch.load(handle, weights_only=False)["step"])
    best = max(steps, key=steps.__getitem__)
    local = Path(tempfile.mkdtemp(prefix="vljepa-checkpoint-"))
    fs.get(f"{best}/{STATE_FILE}", str(local / STATE_FILE))
    state = torch.load(local / STATE_FILE, weights_only=False)
    weights.copy_(state["model"]["weights"])
    return state["step"]


def export_now(storage: str, weights: torch.Tensor) -> int:
    from pipelines.train.checkpoints import latest_checkpoint, load_state, local_checkpoint

    with local_checkpoint(latest_checkpoint("run", storage)) as directory:
        state = load_state(directory)
        weights.copy_(state["model"]["weights"])
        return state["step"]


def run_once(way: str, storage: str, params: int, temp: str) -> dict:
    import fsspec

    import pipelines.train.checkpoints  # noqa: F401  (imports and the S3 client before the measurement)

    fsspec.core.url_to_fs(storage)[0].ls(storage.removeprefix("s3://"))
    tempfile.tempdir = temp  # what each way leaves behind is counted here
    weights = torch.zeros(params)  # the model's parameters, allocated before the measurement
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before, received_before = status_kb("VmRSS"), loopback_bytes()
    started = time.perf_counter()
    step = (export_before if way == "before" else export_now)(storage, weights)
    seconds = time.perf_counter() - started
    left = sum(f.stat().st_size for f in Path(temp).rglob("*") if f.is_file())
    return {"seconds": seconds, "s3_mb": (loopback_bytes() - received_before) / 2**20,
            "peak_mb": (status_kb("VmHWM") - before) / 1024, "left_mb": left / 2**20,
            "step": step, "checksum": float(weights[:: max(1, params // 1000)].sum())}


def measure(way: str, storage: str, params: int) -> dict:
    with tempfile.TemporaryDirectory() as temp, multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_once, (way, storage, params, temp))


def write_run(storage: str, params: int, checkpoints: int) -> float:
    """The run's kept checkpoints, written as Ray Train uploads them; -> MiB of one state."""
    import fsspec

    from pipelines.train.checkpoints import write_state

    fs, path = fsspec.core.url_to_fs(storage)
    generator = torch.Generator().manual_seed(0)
    for number in range(checkpoints):
        step = 100 * (number + 1)
        state = {"step": step, "model": {"weights": torch.randn(params, generator=generator)},
                 "optimizer": {"state": {0: {"exp_avg": torch.randn(params, generator=generator),
                                             "exp_avg_sq": torch.rand(params, generator=generator)}}}}
        with tempfile.TemporaryDirectory() as local:
            write_state(state, Path(local))
            fs.put(f"{local}/", f"{path}/train/checkpoint_{number:06d}/", recursive=True)
            size = Path(local, "state.pt").stat().st_size
    return size / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=int, default=32, help="trainable parameters, millions (paper: 792)")
    parser.add_argument("--checkpoints", type=int, default=2, help="checkpoints kept in the run's storage")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import s3fs

    from pipelines.cluster.net import local_s3_server

    params = args.params * 1_000_000
    with local_s3_server():
        s3fs.S3FileSystem().mkdir(BUCKET)
        storage = f"s3://{BUCKET}/checkpoints"
        state_mb = write_run(storage, params, args.checkpoints)
        runs: dict[str, list[dict]] = {"before": [], "now": []}
        for _ in range(args.rounds):
            for way in runs:
                runs[way].append(measure(way, storage, params))
    results = {(run["step"], run["checksum"]) for way in runs for run in runs[way]}
    assert len(results) == 1, f"the two ways exported different checkpoints: {results}"

    summary = {way: {key: round(statistics.median(run[key] for run in rs), 2)
                     for key in ("seconds", "s3_mb", "peak_mb", "left_mb")} for way, rs in runs.items()}
    print(f"{args.checkpoints} checkpoints on S3 (loopback), each a {state_mb:.0f} MiB state "
          f"({args.params}M weights + 2 moments), median of {args.rounds} rounds")
    print(f"  {'way':7s} {'seconds':>8s} {'S3 MiB':>9s} {'peak MiB':>9s} {'left MiB':>9s}")
    for way, numbers in summary.items():
        print(f"  {way:7s} {numbers['seconds']:8.2f} {numbers['s3_mb']:9.0f} {numbers['peak_mb']:9.0f} "
              f"{numbers['left_mb']:9.0f}")
    old, new = summary["before"], summary["now"]
    print(f"  now / before: time x{new['seconds'] / old['seconds']:.2f}, S3 bytes x{new['s3_mb'] / old['s3_mb']:.2f}, "
          f"peak memory x{new['peak_mb'] / max(old['peak_mb'], 0.1):.2f}")
    print(json.dumps({"config": vars(args), "state_mb": round(state_mb, 1), **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
