"""Serving throughput and latency on loopback: dynamic batching on vs off, and the direct model
call as the floor. Bounded: a fixed number of requests per level, 127.0.0.1 only.

Each request is a real classify call: an H.264 clip (multipart) and 8 candidate labels, through
the HTTP ingress, the visual deployment (batched up to 16, or 1) and the text deployment.

    python -m benchmarks.serve_throughput [--requests-per-level 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from model.export import load_model
from model.tasks import rank
from ops.media_input import decode_media, frames_to_input
from pipelines import export
from pipelines.net import free_loopback_port
from tests.media_fixtures import clip_bytes

LABELS = [f"a {c} {s} moves left" for c in ("red", "blue") for s in ("ball", "cube", "triangle", "cone")]


def direct_floor(model_dir: str, clip: bytes, repeats: int) -> dict:
    """The same work in-process, no HTTP, no Ray: decode, encode, predict, rank."""
    model = load_model(model_dir).eval()
    size, frames_n = model.config.x_encoder.image_size, model.config.x_encoder.num_frames
    labels = model.embed_texts(LABELS)
    latencies = []
    for _ in range(repeats):
        started = time.perf_counter()
        _, frames = decode_media(clip, size, frames_n)
        s_v = model.encode_visual(frames_to_input(frames)[None])
        rank(model.embed_visual(s_v, [""]), labels)
        latencies.append(time.perf_counter() - started)
    return {"throughput": len(latencies) / sum(latencies), "p50_ms": 1000 * statistics.median(latencies)}


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
    args = parser.parse_args(argv)

    from ray import serve

    from pipelines.ray_runtime import init_ray
    from pipelines.serve import build_app

    init_ray()
    clip = clip_bytes()
    with tempfile.TemporaryDirectory() as root:
        model_dir = f"{root}/model"
        export.main(["--preset", "minilm", "--out", model_dir])
        floor = direct_floor(model_dir, clip, repeats=32)
        port = free_loopback_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        results = {}
        for name, batch in (("batched", 16), ("unbatched", 1)):
            serve.run(build_app({"model": model_dir, "num_cpus": 0, "max_batch_size": batch}), name=name,
                      route_prefix=f"/{name}")
            url = f"http://127.0.0.1:{port}/{name}/v1/classify"
            load(url, clip, 4, 8)  # warm-up: replicas, first batches, label cache
            results[name] = [load(url, clip, c, max(args.requests_per_level, c)) for c in (1, 8, 32)]
            serve.delete(name)
        serve.shutdown()

    print(f"direct model call (floor): {floor['throughput']:6.1f} req/s, p50 {floor['p50_ms']:.1f} ms")
    print(f"{'mode':<10} {'conc':>4} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'5xx':>4}")
    for name, rows in results.items():
        for r in rows:
            print(f"{name:<10} {r['concurrency']:>4} {r['throughput']:7.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors_5xx']:>4}")
    at32 = results["batched"][-1]["throughput"] / results["unbatched"][-1]["throughput"]
    print(f"batched / unbatched throughput at concurrency 32: x{at32:.2f}")
    print(json.dumps({"floor": floor, **results, "batching_gain_at_32": round(at32, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
