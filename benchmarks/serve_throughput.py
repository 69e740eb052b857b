"""Serving throughput and latency on loopback: dynamic batching on vs off, and the direct model
call as the floor. Bounded: a fixed number of requests per level, 127.0.0.1 only.

Each request is a real classify call: an H.264 clip (multipart) and 8 candidate labels, through
the HTTP ingress, the visual deployment (batched up to 16, or 1) and the text deployment.

Where the CPU goes: at concurrency 32 the CPU seconds of every process (proxy, ingress, visual,
text, the load generator, Ray's own) are read before and after, per request. With the model's own
batching gain measured in-process (per-clip forward at batch 1 vs 16, one thread as in a replica),
that gives what batching would buy if it sped up the forward pass alone (Amdahl; the replicas'
per-call overheads also shrink when calls queue, so measured gains can sit a little above it):

    bound = unbatched CPU per request / (same - model at batch 1 + model per clip at batch 16)

    python -m benchmarks.serve_throughput [--requests-per-level 64]
    RAY_SERVE_THROUGHPUT_OPTIMIZED=0 python -m benchmarks.serve_throughput   # Ray Serve's default mode
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
import torch

from model.export import load_model
from model.tasks import embed_clips, rank
from ops.data.frames import decode_media, frames_to_input
from pipelines.cluster.net import free_loopback_port
from pipelines.models import export

LABELS = [f"a {c} {s} moves left" for c in ("red", "blue") for s in ("ball", "cube", "triangle", "cone")]


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as the visual replica chooses


def _synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def direct_floor(model, clip: bytes, repeats: int) -> dict:
    """The same work in-process, no HTTP, no Ray: decode, encode, predict, rank."""
    size, frames_n = model.config.x_encoder.image_size, model.config.x_encoder.num_frames
    labels = model.embed_texts(LABELS).cpu()
    latencies = []
    for _ in range(repeats):
        started = time.perf_counter()
        _, frames = decode_media(clip, size, frames_n)
        rank(torch.from_numpy(embed_clips(model, frames_to_input(frames)[None], [""], DEVICE)), labels)
        latencies.append(time.perf_counter() - started)
    return {"throughput": len(latencies) / sum(latencies), "p50_ms": 1000 * statistics.median(latencies)}


def model_batching(model, clip: bytes, batch: int = 16, repeats: int = 8) -> dict:
    """The visual deployment's forward per clip at batch 1 vs `batch` (on CPU one thread, a replica's)."""
    size, frames_n = model.config.x_encoder.image_size, model.config.x_encoder.num_frames
    one = frames_to_input(decode_media(clip, size, frames_n)[1]).to(DEVICE)
    threads = torch.get_num_threads()
    if DEVICE.type == "cpu":
        torch.set_num_threads(1)
    try:
        per_clip = {}
        for n in (1, batch):
            frames = torch.stack([one] * n)
            embed_clips(model, frames, [""] * n, DEVICE)  # warm-up
            _synchronize()
            started = time.perf_counter()
            for _ in range(repeats):
                embed_clips(model, frames, [""] * n, DEVICE)
            _synchronize()
            per_clip[n] = 1000 * (time.perf_counter() - started) / repeats / n
    finally:
        torch.set_num_threads(threads)
    return {"device": DEVICE.type, "batch1_ms": per_clip[1], f"batch{batch}_ms": per_clip[batch],
            "per_clip_ms": per_clip}


ROLES = (("ProxyActor", "proxy"), (":Ingress", "ingress"), (":VisualPredictor", "visual"),
         (":TextEncoder", "text"))


def cpu_seconds_by_role() -> dict[str, float]:
    """CPU seconds so far of every process on this machine, summed per serving role."""
    totals: dict[str, float] = {}
    me = psutil.Process().pid
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            times = process.cpu_times()
            title = " ".join(process.info["cmdline"] or [])
        except (psutil.Error, OSError):
            continue
        role = "load generator" if process.info["pid"] == me else (
            next((name for marker, name in ROLES if marker in title), "ray system" if "ray" in title else "other"))
        totals[role] = totals.get(role, 0.0) + times.user + times.system
    return totals


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests_n: int) -> dict[str, float]:
    return {role: round(1000 * (after[role] - before.get(role, 0.0)) / requests_n, 2)
            for role in after if after[role] - before.get(role, 0.0) > 0}


def load(url: str, clip: bytes, concurrency: int, total: int) -> dict:
    local = threading.local()

    def one(_):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        response = session.post(url, files={"media": ("clip.mp4", clip)}, data={"labels": json.dumps(LABELS)}, timeout=120)
        return time.perf_counter() - started, response.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(total)))
    elapsed = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    return {"concurrency": concurrency, "requests": total, "throughput": total / elapsed,
            "p50_ms": 1000 * latencies[len(latencies) // 2], "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "errors_5xx": sum(1 for _, status in results if status >= 500),
            "non_200": sum(1 for _, status in results if status != 200)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests-per-level", type=int, default=64)
    parser.add_argument("--preset", default="minilm", help="export this untrained preset to serve "
                        "(paper-random: the paper's sizes offline, for a GPU)")
    parser.add_argument("--model", default=None, help="serve this exported model directory instead")
    parser.add_argument("--clip", default=None, help="send this video file (default: a generated H.264 clip)")
    args = parser.parse_args(argv)

    from pipelines.cluster.ray_runtime import SERVE_THROUGHPUT_ENV, init_ray, prefer_serve_throughput_mode

    optimized = prefer_serve_throughput_mode()  # as `vljepa serve` runs; =0 in the environment: Ray's default
    from ray import serve

    from pipelines.serve.app import build_app
    from pipelines.serve.args import ServeAppArgs

    init_ray()
    if args.clip:
        clip = Path(args.clip).read_bytes()
    else:
        from tests.media_fixtures import clip_bytes  # PyAV encodes it: not needed with --clip

        clip = clip_bytes()
    with tempfile.TemporaryDirectory() as root:
        model_dir = args.model or f"{root}/model"
        if not args.model:
            export.main(["--preset", args.preset, "--out", model_dir])
        model = load_model(model_dir).eval().to(DEVICE)  # once: a paper-random model is 3.7 GB
        floor = direct_floor(model, clip, repeats=32)
        batching = model_batching(model, clip)
        del model  # the replicas load their own
        port = free_loopback_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        results, cpu = {}, {}
        for name, batch in (("batched", 16), ("unbatched", 1)):
            serve.run(build_app(ServeAppArgs(model=model_dir, num_cpus=0, max_batch_size=batch,
                                             num_gpus=1 if DEVICE.type == "cuda" else 0)), name=name,
                      route_prefix=f"/{name}")
            url = f"http://127.0.0.1:{port}/{name}/v1/classify"
            load(url, clip, 4, 8)  # warm-up: replicas, first batches, label cache
            results[name] = [load(url, clip, c, max(args.requests_per_level, c)) for c in (1, 8)]
            before = cpu_seconds_by_role()
            results[name].append(load(url, clip, 32, max(args.requests_per_level, 32)))
            cpu[name] = cpu_per_request(before, cpu_seconds_by_role(), results[name][-1]["requests"])
            serve.delete(name)
        serve.shutdown()

    print(f"Serve mode: {'throughput-optimized' if optimized else 'Ray default'} ({SERVE_THROUGHPUT_ENV})")
    print(f"direct model call (floor): {floor['throughput']:6.1f} req/s, p50 {floor['p50_ms']:.1f} ms")
    print(f"{'mode':<10} {'conc':>4} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'5xx':>4}")
    for name, rows in results.items():
        for r in rows:
            print(f"{name:<10} {r['concurrency']:>4} {r['throughput']:7.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors_5xx']:>4}")
    at32 = results["batched"][-1]["throughput"] / results["unbatched"][-1]["throughput"]
    print(f"batched / unbatched throughput at concurrency 32: x{at32:.2f}")
    roles = sorted({role for per in cpu.values() for role in per}, key=lambda r: -cpu["unbatched"].get(r, 0))
    print("CPU ms per request at concurrency 32 (all processes on this machine):")
    totals = {name: sum(per.values()) for name, per in cpu.items()}
    for role in roles:
        print(f"  {role:<15} " + "  ".join(f"{name} {cpu[name].get(role, 0.0):6.2f}" for name in cpu))
    print(f"  {'total':<15} " + "  ".join(f"{name} {totals[name]:6.2f}" for name in cpu))
    print(f"model forward per clip on {DEVICE.type}: batch 1 {batching['batch1_ms']:.2f} ms, batch 16 "
          f"{batching['batch16_ms']:.2f} ms (x{batching['batch1_ms'] / batching['batch16_ms']:.1f})")
    bound = None
    if DEVICE.type == "cpu":  # the forward pass's CPU time is then part of the request's CPU time
        unbatched_total = totals["unbatched"]
        bound = round(unbatched_total / (unbatched_total - batching["batch1_ms"] + batching["batch16_ms"]), 2)
        print(f"batching's gain at concurrency 32 if it sped up the forward pass alone: x{bound:.2f}")
    print(json.dumps({"serve_throughput_optimized": optimized, "floor": floor, **results,
                      "batching_gain_at_32": round(at32, 2),
                      "cpu_ms_per_request_at_32": cpu, "model_batching": batching,
                      "batching_bound_at_32": bound}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
