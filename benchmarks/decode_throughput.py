"""Decode + frame-sample throughput: the Ray Data stage on all cores vs a bare decord loop.

Both decode the same H.264 clips into the same sampled, resized, centre-cropped frames. The bare
loop runs in one process with no Ray at all; the Ray stage is the pipeline's own parse + decode
(`ops.stages`), one task per shard, on every core. Prints clips/s for each and

    efficiency = ray_clips_per_s / (cores x bare_clips_per_s)      (target >= 0.8)

    python -m benchmarks.decode_throughput [--shards 8] [--clips-per-shard 16] [--frames 16]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from ops.decode import decode_video
from ops.media_encode import encode_h264
from ops.scenes import all_scenes, render_clip
from ops.shard_io import ShardWriter, iter_samples
from ops.stages import decode_sample, parse_shard


def write_clips(root: str, shards: int, clips_per_shard: int, source_frames: int, size: int) -> list[str]:
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


def ray_stage(urls: list[str], image_size: int, num_frames: int, cores: int) -> tuple[int, float]:
    import ray

    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        items = [{"url": u, "shard": str(i)} for i, u in enumerate(urls)]

        def stage(batch):
            return (ray.data.from_items(batch, override_num_blocks=len(batch))
                    .flat_map(lambda item: parse_shard(item["url"], item["shard"]))
                    .map(decode_sample, fn_kwargs={"image_size": image_size, "num_frames": num_frames})
                    # keep only the status: like the bare loop, measure decoding, not shipping every
                    # decoded clip to this driver (in the pipeline frames go on to the encoder actors)
                    .map(lambda row: {"ok": row["status"] == "ok", "frames": len(row["frames"])}))

        # warm-up, not timed: start the workers and pay their imports (torch, decord) once
        for _ in stage(items[:cores]).iter_rows():
            pass
        started = time.perf_counter()
        dataset = stage(items)
        clips = sum(1 for row in dataset.iter_rows() if row["ok"])
        return clips, time.perf_counter() - started
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--clips-per-shard", type=int, default=16)
    parser.add_argument("--source-frames", type=int, default=64, help="frames per encoded clip")
    parser.add_argument("--source-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16, help="frames sampled per clip")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as root:
        urls = write_clips(root, args.shards, args.clips_per_shard, args.source_frames, args.source_size)
        bare_clips, bare_seconds = bare_loop(urls, args.image_size, args.frames)
        ray_clips, ray_seconds = ray_stage(urls, args.image_size, args.frames, args.cores)
    assert bare_clips == ray_clips, (bare_clips, ray_clips)
    bare_rate, ray_rate = bare_clips / bare_seconds, ray_clips / ray_seconds
    result = {"clips": bare_clips, "cores": args.cores, "bare_clips_per_s": round(bare_rate, 1),
              "ray_clips_per_s": round(ray_rate, 1), "speedup": round(ray_rate / bare_rate, 2),
              "efficiency": round(ray_rate / (args.cores * bare_rate), 2)}
    print(f"bare decord loop, 1 process : {bare_rate:7.1f} clips/s")
    print(f"Ray Data stage, {args.cores} cores    : {ray_rate:7.1f} clips/s  "
          f"(x{result['speedup']}, efficiency {result['efficiency']} of {args.cores} x bare)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
