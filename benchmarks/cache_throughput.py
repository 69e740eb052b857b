"""End-to-end feature caching: samples/s and cache bytes per sample, plus paper-scale projections.

Runs `vljepa cache-features` over the sample dataset's train split for each offline preset, then
projects the paper preset's bytes per sample from its architecture (V-JEPA 2 ViT-L at 256px:
256 tokens per tubelet of 2 frames, 1024-d, float16) at 1, 8 and 32 frames. The baseline in the
same run is the raw S_V payload (tokens x width x 2 bytes): the ratio shows what Parquet and its
metadata add or save.

    python -m benchmarks.cache_throughput [--presets tiny minilm] [--shards DIR_OR_GLOB]

--shards caches those shards instead of writing the sample set (e.g. sample-data made elsewhere,
on a GPU node whose image has no H.264 encoder).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time

from model.build import build_skeleton
from model.presets import get_preset
from pipelines.cache import cache_features

BYTES_PER_VALUE = {"float16": 2, "float32": 4}


def payload_bytes(preset: str, num_frames: int, dtype: str = "float16") -> int:
    model = build_skeleton(get_preset(preset))
    size = model.config.x_encoder.image_size
    return model.x_encoder.num_tokens(num_frames, size) * model.x_encoder.hidden_size * BYTES_PER_VALUE[dtype]


def run_preset(preset: str, shards: str, root: str) -> dict:
    stdout = io.StringIO()
    cpu_before = time.process_time()  # this process is the run's driver
    with contextlib.redirect_stdout(stdout):
        cache_features.main(["--shards", shards, "--out", f"{root}/cache-{preset}", "--preset", preset, "--json"])
    driver_cpu = time.process_time() - cpu_before
    result = json.loads(stdout.getvalue().strip().splitlines()[-1])
    frames = get_preset(preset).x_encoder.num_frames
    per_sample = result["bytes_written"] / result["cached"]
    raw = payload_bytes(preset, frames)  # clips dominate the sample data; images hold fewer tokens
    return {"preset": preset, "samples": result["cached"], "seconds": result["seconds"],
            "samples_per_s": round(result["cached"] / result["seconds"], 1),
            "bytes_per_sample": round(per_sample), "raw_clip_payload_bytes": raw,
            # what the driver spends per sample: the cap on one driver's throughput at cluster scale
            "driver_cpu_ms_per_sample": round(1000 * driver_cpu / max(result["samples_in"], 1), 2),
            "stages": result.get("stages", [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "minilm"])
    parser.add_argument("--shards", default=None, help="cache these shards instead of the sample set's train split")
    args = parser.parse_args(argv)
    from pipelines.cluster.ray_runtime import init_ray

    init_ray()  # started before timing: every preset's number excludes Ray's start-up
    with tempfile.TemporaryDirectory() as root:
        shards = args.shards
        if shards is None:
            from ops.data.sample_data import SampleDataConfig, write_split  # PyAV: only to make the sample set

            write_split(root, "train", SampleDataConfig())
            shards = f"{root}/train"
        results = [run_preset(p, shards, root) for p in args.presets]
    for r in results:
        print(f"{r['preset']:>7}: {r['samples']} samples in {r['seconds']:.1f}s = {r['samples_per_s']} samples/s, "
              f"{r['bytes_per_sample']} B/sample on disk (one clip's raw S_V: {r['raw_clip_payload_bytes']} B), "
              f"driver CPU {r['driver_cpu_ms_per_sample']} ms/sample")
    projection = {frames: payload_bytes("paper", frames) for frames in (1, 8, 32)}
    for frames, size in projection.items():
        print(f"  paper, {frames:>2} frame(s): {size / 2**20:.2f} MiB of S_V per sample (float16)")
    print(json.dumps({"presets": results, "paper_projection_bytes": projection}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
