"""Decode + frame-sample throughput: the Ray Data stage on all cores vs a bare decord loop.

All decode the same H.264 clips into the same sampled, resized, centre-cropped frames:
  bare      one loop in one process, one thread, no Ray calls;
  parallel  `cores` such loops in separate processes (multiprocessing, no Ray): how far this
            machine's cores scale by themselves;
  ray       the pipeline's own parse + decode (`ops.data.stages`) as a Ray Data pipeline, one task per
            shard, on every core, with the pipeline's Ray Data settings.
The three alternate for --rounds rounds (medians reported). Prints clips/s for each and

    efficiency = ray_clips_per_s / (cores x bare_clips_per_s)      (target >= 0.8)

    python -m benchmarks.decode_throughput [--shards 8] [--clips-per-shard 16] [--frames 16]

--clips-dir DIR keeps the clips: written there on the first run, read back on later ones (and on
a machine without an H.264 encoder, from shards made elsewhere: every *.tar in DIR is used).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ops.data.frames import decode_video
from ops.data.scenes import all_scenes, render_clip
from ops.data.shards import ShardWriter, iter_samples
from ops.data.stages import decode_sample, parse_shard


def write_clips(root: str, shards: int, clips_per_shard: int, source_frames: int, size: int) -> list[str]:
    from ops.data.frames import encode_h264  # PyAV: only where clips are made, not where they are read

    rng = np.random.default_rng(0)
    scenes = all_scenes()
    urls = []
    for shard in range(shards):
        url = f"{root}/{shard:05d}.tar"
        with ShardWriter(url) as writer:
            for index in range(clips_per_shard):
                scene = scenes[(shard * clips_per_shard + index) % len(scenes)]
                clip = encode_h264(render_clip(scene, source_frames, size, rng), fps=30)
                writer.write(f"{shard:05d}{index:04d}", {"mp4": clip, "txt": scene.caption.encode()})
        urls.append(url)
    return urls


def clip_shards(args, root: str) -> list[str]:
    """The *.tar shards already in `root`, or freshly written ones."""
    existing = sorted(str(p) for p in Path(root).glob("*.tar"))
    if existing:
        return existing
    Path(root).mkdir(parents=True, exist_ok=True)
    return write_clips(root, args.shards, args.clips_per_shard, args.source_frames, args.source_size)


def bare_loop(urls: list[str], image_size: int, num_frames: int) -> tuple[int, float]:
    import torch

    # One core, as each Ray worker gets (Ray sets OMP_NUM_THREADS=1 for a num_cpus=1 task):
    # otherwise torch's resize quietly uses every core and the baseline is not one process's worth.
    torch.set_num_threads(1)
    started = time.perf_counter()
    clips = 0
    for url in urls:
        for sample in iter_samples(url):
            decode_video(sample.members["mp4"], image_size, num_frames)
            clips += 1
    return clips, time.perf_counter() - started


def _bare_worker(job: tuple[list[str], int, int]) -> tuple[int, float]:
    return bare_loop(*job)


def parallel_bare(pool, urls: list[str], image_size: int, num_frames: int, cores: int) -> tuple[int, float]:
    """`cores` bare loops in separate processes, no Ray: what this machine's cores give in parallel."""
    started = time.perf_counter()
    results = pool.map(_bare_worker, [(urls[i::cores], image_size, num_frames) for i in range(cores)])
    return sum(clips for clips, _ in results), time.perf_counter() - started


def ray_stage(urls: list[str], image_size: int, num_frames: int):
    """The pipeline's parse + decode stage as a Ray Data pipeline; -> run(urls) -> (clips, seconds)."""
    import ray

    def stage(items):
        return (ray.data.from_items(items, override_num_blocks=len(items))
                .flat_map(lambda item: parse_shard(item["url"], item["shard"]))
                .map(decode_sample, fn_kwargs={"image_size": image_size, "num_frames": num_frames})
                # keep only the status: like the bare loop, measure decoding, not shipping every
                # decoded clip to this driver (in the pipeline frames go on to the encoder actors).
                # A column select on the Arrow block: a row-wise map here took 4% of the workers'
                # time turning each row, frames included, into Python objects (py-spy).
                .map_batches(lambda block: block.select(["status"]), batch_format="pyarrow", batch_size=None))

    def run(subset: list[str]) -> tuple[int, float]:
        started = time.perf_counter()
        clips = sum(1 for row in stage([{"url": u, "shard": str(i)} for i, u in enumerate(subset)]).iter_rows()
                    if row["status"] == "ok")
        return clips, time.perf_counter() - started

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--clips-per-shard", type=int, default=16)
    parser.add_argument("--source-frames", type=int, default=64, help="frames per encoded clip")
    parser.add_argument("--source-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16, help="frames sampled per clip")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--no-progress", action="store_true", help="Ray Data progress bars off")
    parser.add_argument("--warmup-rounds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare / Ray measurements (medians)")
    parser.add_argument("--clips-dir", default=None,
                        help="use the clip shards (*.tar) in this directory; write them there first if it has none")
    args = parser.parse_args(argv)

    import ray

    from pipelines.cluster.ray_runtime import init_ray

    init_ray(num_cpus=args.cores, log_to_driver=False)  # with the pipeline's own Ray Data settings
    ray.data.DataContext.get_current().enable_progress_bars = not args.no_progress
    rates: dict[str, list[float]] = {"bare": [], "parallel": [], "ray": []}
    try:
        with tempfile.TemporaryDirectory() as root, get_context("spawn").Pool(args.cores) as pool:
            urls = clip_shards(args, args.clips_dir or root)
            expected = sum(1 for url in urls for _ in iter_samples(url))
            run_ray = ray_stage(urls, args.image_size, args.frames)
            for _ in range(args.warmup_rounds):  # not timed: start the workers, pay their imports once
                run_ray(urls[: args.cores])
                parallel_bare(pool, urls[: args.cores], args.image_size, args.frames, args.cores)
            # alternate the three, and take medians: the machine's own noise (~10%) hits all alike
            for _ in range(args.rounds):
                for name, run in (("bare", lambda: bare_loop(urls, args.image_size, args.frames)),
                                  ("parallel", lambda: parallel_bare(pool, urls, args.image_size, args.frames, args.cores)),
                                  ("ray", lambda: run_ray(urls))):
                    clips, seconds = run()
                    assert clips == expected, (name, clips, expected)
                    rates[name].append(clips / seconds)
    finally:
        ray.shutdown()
    bare_rate, parallel_rate, ray_rate = (statistics.median(rates[k]) for k in ("bare", "parallel", "ray"))
    result = {"clips": clips, "cores": args.cores, "rounds": args.rounds,
              "bare_clips_per_s": round(bare_rate, 1), "parallel_bare_clips_per_s": round(parallel_rate, 1),
              "ray_clips_per_s": round(ray_rate, 1), "speedup": round(ray_rate / bare_rate, 2),
              "efficiency": round(ray_rate / (args.cores * bare_rate), 2),
              "parallel_bare_efficiency": round(parallel_rate / (args.cores * bare_rate), 2),
              "ray_over_parallel_bare": round(ray_rate / parallel_rate, 2),
              "efficiency_per_round": [round(r / (args.cores * b), 2) for b, r in zip(rates["bare"], rates["ray"])]}
    print(f"bare decord loop, 1 process : {bare_rate:7.1f} clips/s")
    print(f"{args.cores} bare loops in parallel : {parallel_rate:7.1f} clips/s  (efficiency "
          f"{result['parallel_bare_efficiency']}: what the cores give with no Ray at all)")
    print(f"Ray Data stage, {args.cores} cores    : {ray_rate:7.1f} clips/s  (x{result['speedup']}, efficiency "
          f"{result['efficiency']} of {args.cores} x bare; {result['ray_over_parallel_bare']} of the parallel loops)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
