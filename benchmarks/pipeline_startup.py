"""How long a cache-features run over many shards takes to start: one input block per shard vs
the pipeline's cap (`pipelines.cache.cache_features.MAX_INPUT_BLOCKS`).

The driver pays Ray Data's per-block costs (building the input blocks, planning a task per block)
before the first sample is decoded. This builds the pipeline's input over N shard URLs (nothing
is read: the first stage only measures the URL), both ways, and times the first output.

    python -m benchmarks.pipeline_startup [--shards 20000]
"""

from __future__ import annotations

import argparse
import json
import time

from pipelines.cache.cache_features import MAX_INPUT_BLOCKS


def first_output_seconds(items: list[dict], blocks: int) -> float:
    """On a fresh local Ray instance (warmed up), shut down afterwards: a run that only takes its
    first output leaves its executor working, which would slow whatever is timed next."""
    import ray

    from pipelines.cluster.ray_runtime import init_ray

    init_ray(log_to_driver=False)
    try:
        warm_up = ray.data.from_items(items[:100], override_num_blocks=100).flat_map(_measure_url)
        next(iter(warm_up.iter_internal_ref_bundles()))  # workers started, imports paid
        started = time.perf_counter()
        dataset = ray.data.from_items(items, override_num_blocks=blocks).flat_map(_measure_url)
        next(iter(dataset.iter_internal_ref_bundles()))
        return time.perf_counter() - started
    finally:
        ray.shutdown()


def _measure_url(item: dict) -> list[dict]:
    return [{"n": len(item["url"])}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=20000)
    args = parser.parse_args(argv)
    items = [{"url": f"s3://bucket/prefix/shard-{i:07d}.tar", "shard": f"shard-{i:07d}"} for i in range(args.shards)]
    capped_blocks = min(args.shards, MAX_INPUT_BLOCKS)
    per_shard = first_output_seconds(items, args.shards)
    capped = first_output_seconds(items, capped_blocks)
    result = {"shards": args.shards, "one_block_per_shard_s": round(per_shard, 2),
              "capped_blocks": capped_blocks, "capped_s": round(capped, 2), "speedup": round(per_shard / capped, 1)}
    print(f"{args.shards} shards: first output after {per_shard:.1f} s with one block per shard, "
          f"{capped:.1f} s with {capped_blocks} blocks (x{result['speedup']})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
