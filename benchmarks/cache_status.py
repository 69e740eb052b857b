"""Reading a large cache's state before a re-run: one request per shard vs a listing + the manifest.

`vljepa cache-features` reads every shard's commit marker before the run (done / pending / stale)
and after it (the manifest). This commits N shards' markers to an S3 bucket (moto's server on
127.0.0.1) and to a local directory, writes a manifest listing 90% of them (the rest: what a
killed run committed after the last manifest), and times, alternating for --rounds rounds
(medians):
  per-shard  `FeatureCache.marker(shard)` for each shard in turn (the previous code);
  listed     `FeatureCache.markers(shards)`: one listing (1000 names a request), the manifest,
             and one batched `fs.cat` of the markers the manifest lacks;
  no manifest  the same with no manifest at all (a first run killed before it wrote one): every
             marker through the batched read.
Loopback S3 has ~no latency; a real region adds ~10-30 ms per request, which the per-shard path
pays N times in sequence, so the ratios here are floors.

    python -m benchmarks.cache_status [--shards 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from ops.cache.feature_cache import FeatureCache, Fingerprint
from pipelines.cluster.net import local_s3_server

FINGERPRINT = Fingerprint(x_encoder="x", x_encoder_config_hash="0", num_frames=8, image_size=256, storage_dtype="float16")
MARKER = {"rows": 100, "bad": {}, "bytes": 1, "fingerprint": FINGERPRINT.digest()}


def commit_markers(cache: FeatureCache, shards: list[str]) -> None:
    for shard in shards:
        cache.write_bytes(f"{shard}.done.json", json.dumps(MARKER).encode())


def timed(read, shards: list[str]) -> float:
    started = time.perf_counter()
    markers = read(shards)
    seconds = time.perf_counter() - started
    assert sum(m is not None for m in markers.values()) == len(shards) - 1  # the last one is never written
    return seconds


def measure(cache: FeatureCache, shards: list[str], rounds: int) -> dict:
    commit_markers(cache, shards[:-1])
    per_shard = lambda names: {name: cache.marker(name) for name in names}  # noqa: E731
    times: dict[str, list[float]] = {"per_shard": [], "no_manifest": [], "listed": []}
    timed(cache.markers, shards)  # warm-up: connections, imports
    for _ in range(rounds):
        if cache.fs.exists(cache.path("manifest.json")):
            cache.fs.rm(cache.path("manifest.json"))
        times["per_shard"].append(timed(per_shard, shards))
        times["no_manifest"].append(timed(cache.markers, shards))
        cache.write_manifest(FINGERPRINT, {name: MARKER for name in shards[: len(shards) * 9 // 10]})
        times["listed"].append(timed(cache.markers, shards))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"shards": len(shards), **{f"{name}_s": round(v, 3) for name, v in medians.items()},
            "speedup_listed": round(medians["per_shard"] / medians["listed"], 1),
            "speedup_no_manifest": round(medians["per_shard"] / medians["no_manifest"], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    shards = [f"shard-{i:06d}" for i in range(args.shards)]
    results = {}
    with local_s3_server():
        import s3fs

        s3fs.S3FileSystem().mkdir("vljepa-bench")
        results["s3 (moto, 127.0.0.1)"] = measure(FeatureCache("s3://vljepa-bench/cache"), shards, args.rounds)
    with tempfile.TemporaryDirectory() as root:
        results["local directory"] = measure(FeatureCache(f"{root}/cache"), shards, args.rounds)
    for store, r in results.items():
        print(f"{store:22s}: {r['shards']} markers: per shard {r['per_shard_s']:.2f} s; listing + manifest "
              f"{r['listed_s']:.2f} s (x{r['speedup_listed']}); no manifest, batched read {r['no_manifest_s']:.2f} s "
              f"(x{r['speedup_no_manifest']})")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
