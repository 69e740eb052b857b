"""`vljepa cache-features --shards SRC --out CACHE`: frozen V-JEPA 2 features for webdataset shards.

    shards (local, glob, brace, s3://)
      -> parse      one CPU task per shard: tar members -> sample rows (bad ones flagged, kept)
      -> decode     CPU tasks: PIL / decord, uniform frame sampling, resize + centre crop
      -> featurise  actor pool: frozen x-encoder loaded once per actor, batched (GPU bf16 if any)
      -> commit     a task per shard once all its rows are featurised: Parquet + report, then
                    the done marker (pipelines/cache/commits.py; the driver never holds features)

Re-runs skip shards already complete with the same fingerprint; a cache built with different
settings is refused unless --overwrite; --dry-run lists done / pending / stale shards.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from model.checkpoint_loading import check_reachable
from model.encoder_identity import x_encoder_identity
from model.presets import PRESETS, get_preset
from ops.cache.feature_cache import FeatureCache, Fingerprint
from ops.cache.featurize import STORAGE_DTYPES, Featurizer
from ops.data.shards import resolve_shards, shard_name
from ops.data.stages import decode_sample, parse_shard
from pipelines.cli.report import human_count, print_json_result, run_as_process, table
from pipelines.cli.types import positive_float, positive_int
from pipelines.cluster.ray_runtime import stage_throughput

# The driver spends ~2 ms per input block before the first sample is decoded (50,000 shards as
# 50,000 blocks: 97 s to the first output, as 4096 blocks: 11 s, on 2 cores; docs/benchmarks.md):
# a large re-run starts in seconds, and 4096 tasks still keep a large cluster busy.
MAX_INPUT_BLOCKS = 4096
# Shards listed one per line in the status table before a run; a large cache gets a summary.
STATUS_ROWS = 40


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vljepa cache-features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # what to read and write
    parser.add_argument("--shards", required=True, help="dir, glob, brace pattern or s3:// of .tar shards")
    parser.add_argument("--out", required=True, help="cache directory (local or s3://)")
    # what determines the features
    parser.add_argument("--preset", choices=sorted(PRESETS), default="minilm")
    parser.add_argument("--frames", type=positive_int, default=None, help="frames per video (default: the preset's)")
    parser.add_argument("--dtype", choices=sorted(STORAGE_DTYPES), default="float16", help="storage dtype of S_V")
    # re-running
    parser.add_argument("--overwrite", action="store_true", help="replace a cache built with other settings")
    parser.add_argument("--dry-run", action="store_true", help="list done / pending / stale shards and stop")
    # resources
    parser.add_argument("--actors", type=positive_int, default=None, help="x-encoder actors (default: GPUs, else 1)")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="clips per x-encoder call (on GPUs 64 is faster: docs/benchmarks.md)")
    parser.add_argument("--actor-memory-gb", type=positive_float, default=1.0,
                        help="memory each x-encoder actor reserves (paper's ViT-L in bf16: use ~4)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def fingerprint_for(preset: str, num_frames: int | None, dtype: str) -> tuple[Fingerprint, str, int]:
    config = get_preset(preset)
    checkpoint = config.x_encoder.checkpoint
    frames = num_frames or config.x_encoder.num_frames
    fingerprint = Fingerprint(**x_encoder_identity(checkpoint), num_frames=frames,
                              image_size=config.x_encoder.image_size, storage_dtype=dtype)
    return fingerprint, checkpoint, frames


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fingerprint, checkpoint, num_frames = fingerprint_for(args.preset, args.frames, args.dtype)
    digest = fingerprint.digest()
    urls = resolve_shards(args.shards)
    names = [shard_name(u) for u in urls]
    duplicated = [n for n, c in Counter(names).items() if c > 1]
    if duplicated:
        shown = ", ".join(duplicated[:5]) + (f" and {len(duplicated) - 5} more" if len(duplicated) > 5 else "")
        raise SystemExit(f"cache-features: shards in different folders share file names ({shown}), and a cache "
                         "holds one shard per name: cache each source to its own --out (train and train-decoder "
                         "read several caches as one dataset: --cache A --cache B), or give the shards unique names")
    cache = FeatureCache(args.out)
    status = cache.status(names, digest)

    foreign = cache.foreign_fingerprint(digest)
    stale = [n for n, s in status.items() if s == "stale"]
    print(status_table(names, status))
    print(f"{sum(s == 'done' for s in status.values())} done, {sum(s == 'pending' for s in status.values())} "
          f"pending, {len(stale)} stale; fingerprint {digest}")
    if args.dry_run:
        if args.json:
            print_json_result({"fingerprint": digest, "shards": status})
        return 0
    if (foreign or stale) and not args.overwrite:
        print(f"cache-features: {args.out} holds features built with other settings (fingerprint "
              f"{foreign or 'of ' + str(len(stale)) + ' shards'}, this run {digest}). Use another --out, "
              f"or --overwrite to replace it.", file=sys.stderr)
        return 2
    if foreign or stale:
        print(f"--overwrite: clearing {args.out}")
        cache.clear()
        status = {n: "pending" for n in names}

    pending = [(u, n) for u, n in zip(urls, names) if status[n] == "pending"]
    if pending:
        check_reachable(checkpoint)  # no hub access: one line now, not every actor's traceback later
        cache.check_writable()  # likewise for an --out this run could not commit to
    started = time.perf_counter()
    committed, stages = run_pipeline(pending, cache, checkpoint, fingerprint, num_frames, args) if pending else ({}, [])
    elapsed = time.perf_counter() - started

    # this run's commits are known; the rest come from the listing and the previous manifest
    shards = cache.markers(names, known=committed)
    cache.write_manifest(fingerprint, {n: m for n, m in shards.items() if m is not None})
    return report(committed, stages, shards, elapsed, args)


def status_table(names: list[str], status: dict[str, str], limit: int = STATUS_ROWS) -> str:
    """Every shard's status when there are few; else the first `limit` that are not done (the
    ones a user looks for), then how many rows were left out."""
    if len(names) <= limit:
        return table([[n, status[n]] for n in names], ["shard", "status"])
    shown = [n for n in names if status[n] != "done"][:limit]
    return (table([[n, status[n]] for n in shown], ["shard", "status"])
            + f"\n... {len(names) - len(shown)} more shards not listed (every shard: --dry-run --json)")


def run_pipeline(pending, cache: FeatureCache, checkpoint: str, fingerprint: Fingerprint,
                 num_frames: int, args) -> tuple[dict[str, dict], list[dict]]:
    """-> ({shard: its counts}, the stage table's rows)."""
    import ray

    from pipelines.cache.commits import commit_stream
    from pipelines.cluster.ray_runtime import gpus_available, init_ray

    init_ray(args.address)
    gpus = gpus_available()
    actors = args.actors or max(gpus, 1)
    items = [{"url": u, "shard": n} for u, n in pending]
    dataset = (
        # one parse task per shard, up to MAX_INPUT_BLOCKS tasks; past that, consecutive shards share
        ray.data.from_items(items, override_num_blocks=min(len(items), MAX_INPUT_BLOCKS))
        .flat_map(lambda item: parse_shard(item["url"], item["shard"]))
        # CPU tasks; Ray Data's default SPREAD scheduling fans them out over every node
        .map(decode_sample, fn_kwargs={"image_size": fingerprint.image_size, "num_frames": num_frames},
             num_cpus=1)
        .map_batches(Featurizer, fn_constructor_kwargs={"checkpoint": checkpoint, "storage_dtype": fingerprint.storage_dtype},
                     compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0,
                     # The reservation keeps actors from overcommitting a node's memory, and (being
                     # a different resource request) keeps Ray from fusing decoding into the actors,
                     # which would serialise it behind the encoder.
                     memory=int(args.actor_memory_gb * 2**30),
                     batch_size=args.batch_size, batch_format="numpy")
    )
    committed, commit_stage = commit_stream(dataset, cache, fingerprint.digest(), fingerprint.storage_dtype)
    return committed, [*stage_throughput(dataset), commit_stage]


def report(committed: dict[str, dict], stages: list[dict], shards: dict[str, dict | None], elapsed: float,
           args) -> int:
    cached = sum(c["rows"] for c in committed.values())
    bad = Counter()
    for counts in committed.values():
        bad.update(counts["bad"])
    written = sum(c["bytes"] for c in committed.values())
    samples_in = cached + sum(bad.values())
    rate = samples_in / elapsed if elapsed > 0 else 0.0
    print(f"\ncache-features: {len(committed)} shards processed, {len(shards) - len(committed)} skipped "
          f"(already done) in {elapsed:.1f}s")
    print(table([["samples in", samples_in], ["cached", cached], ["bad", sum(bad.values())],
                 ["bytes written", human_count(written)], ["samples/s", f"{rate:.1f}"]], ["", "value"]))
    if stages:
        print(table([[s["stage"], s["rows"], f"{s['seconds']:.1f}", f"{s['rows_per_s']:.1f}", s["task_seconds"]]
                     for s in stages], ["stage", "rows", "seconds", "rows/s", "task-seconds"]))
    if bad:
        print(table([[reason, n] for reason, n in sorted(bad.items())], ["bad sample reason", "count"]))
        print(f"per-sample reasons: {args.out}/<shard>.report.parquet")
    if args.json:
        print_json_result({"shards_processed": len(committed), "shards_skipped": len(shards) - len(committed),
                           "samples_in": samples_in, "cached": cached, "bad": dict(bad),
                           "bytes_written": written, "seconds": round(elapsed, 2), "cache": args.out,
                           "stages": stages})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "cache-features"))
