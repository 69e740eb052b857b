"""Peak memory and time of decoding one large clip: every sampled frame in one read vs the budget.

`ops.data.frames.read_frames_at_size` reads the sampled frames of a clip in groups when together they
would exceed `DECODE_BUDGET_BYTES` of full-resolution RGB (each group shrunk to the model's size
at once). This builds an H.264 clip at --width x --height (4K UHD by default), then decodes it
--frames frames at --size in fresh processes, alternating for --rounds rounds (medians):
  one read   the budget lifted: every sampled frame at full resolution at once (the previous code);
  budget     the default budget (or --budget-mb).
Peak memory is the process's peak RSS during the decode (VmHWM, reset just before) minus its RSS
then (the clip's bytes already read, the modules imported). Linux only.

    python -m benchmarks.decode_memory [--width 3840 --height 2160 --frames 16 --size 256]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clip(width: int, height: int, num_frames: int) -> bytes:
    """A moving gradient (decodes like real footage, unlike noise, which no encoder compresses)."""
    from ops.data.frames import encode_h264

    y, x = (a.astype(np.int32) for a in np.mgrid[0:height, 0:width])
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)  # 64 frames of 4K: 1.6 GB
    for t, frame in enumerate(frames):
        for channel, plane in enumerate((x // 8 + 5 * t, y // 8 + 3 * t, (x + y) // 16 + t)):
            frame[..., channel] = plane % 256
    return encode_h264(frames)


def status_kb(field: str) -> int:
    """A line of /proc/self/status in kB. Linux: getrusage's maxrss survives exec, so a spawned
    child would report its parent's peak; VmHWM belongs to this process's own memory map."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def decode_once(path: str, num_frames: int, size: int, budget_bytes: int | None) -> dict:
    import ops.data.frames

    if budget_bytes is not None:
        ops.data.frames.DECODE_BUDGET_BYTES = budget_bytes
    data = Path(path).read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status_kb("VmRSS")
    started = time.perf_counter()
    frames, _ = ops.data.frames.decode_video(data, size, num_frames)
    seconds = time.perf_counter() - started
    return {"peak_mb": (status_kb("VmHWM") - before) / 1024, "seconds": seconds, "checksum": int(frames.sum())}


def measure(path: str, num_frames: int, size: int, budget_bytes: int | None) -> dict:
    # a fresh process per decode: no allocator caches or decoder state carried over
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(decode_once, (path, num_frames, size, budget_bytes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--height", type=int, default=2160)
    parser.add_argument("--clip-frames", type=int, default=32, help="frames in the encoded clip")
    parser.add_argument("--frames", type=int, default=16, help="frames sampled from it")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-mb", type=float, default=None, help="default: ops.data.frames.DECODE_BUDGET_BYTES")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "clip.mp4")
        Path(path).write_bytes(make_clip(args.width, args.height, args.clip_frames))
        budgets = {"one read": 2**62, "budget": None if args.budget_mb is None else int(args.budget_mb * 2**20)}
        runs: dict[str, list[dict]] = {name: [] for name in budgets}
        for _ in range(args.rounds):
            for name, budget in budgets.items():
                runs[name].append(measure(path, args.frames, args.size, budget))
    checksums = {r["checksum"] for rs in runs.values() for r in rs}
    assert len(checksums) == 1, "the two ways decoded different clips"
    summary = {name: {"peak_mb": statistics.median(r["peak_mb"] for r in rs),
                      "seconds": statistics.median(r["seconds"] for r in rs)} for name, rs in runs.items()}
    one, budget = summary["one read"], summary["budget"]
    print(f"{args.width}x{args.height}, {args.frames} of {args.clip_frames} frames -> {args.size}px, "
          f"median of {args.rounds} rounds")
    for name, s in summary.items():
        print(f"  {name:9s} peak +{s['peak_mb']:8.1f} MB  {s['seconds'] * 1000:8.1f} ms")
    print(f"  budget / one read: memory x{budget['peak_mb'] / one['peak_mb']:.2f}, "
          f"time x{budget['seconds'] / one['seconds']:.2f}")
    print(json.dumps({"config": vars(args), **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
