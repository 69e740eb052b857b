"""Peak memory and time of writing and reading a feature-cache shard of paper-size features.

One shard of --rows rows, each S_V 1024 tokens x 1024 float16 (2 MiB: V-JEPA 2 ViT-L, 8 frames at
256px), random values. Each operation runs in a fresh process, the previous way (the code before
the cache's row groups, kept here as the baseline) and today's, alternating for --rounds rounds
(medians):
  commit     a shard's rows -> its Parquet file. Before: the whole table, then the whole file
             encoded in memory, then written. Now: row groups of ops.cache.parquet.ROW_GROUP_BYTES,
             each built, encoded and written before the next (ops/cache/parquet.py).
  train read the training reader (ops.cache.files.CacheFileReader) over the file. Before: a file of
             one row group (as every cache was written). Now: the same rows in row groups.
  read 10%   the same, for a source read at a 10% share (--cache-weights far down, SFT replay):
             the same drawn rows; now only the row groups holding one are read.
  eval load  ops.evaluate.zero_shot.load_rows. Before: every column through to_pylist (S_V as Python floats).
             Now: a row group at a time, S_V as numpy views.
  eval held  the in-training evaluation's rows over two evaluations (--eval-every). Before:
             load_rows, held between them (what train_loop kept for the whole run). Now:
             ops.evaluate.held_out_rows.HeldOutRows, read again a row group at a time at each (local cache).
  index read the S_V of 4 rows, as a reader of a few rows (index-build re-predicting a changed
             caption) reads them. Before: the shard's S_V column whole, then to_pylist. Now: only
             the row groups holding them (rows_at).
Peak memory is the process's peak RSS during the operation (VmHWM, reset just before) minus its RSS
then (the rows or the file's path ready, modules imported). Linux only.

    python -m benchmarks.cache_memory [--rows 64] [--rounds 3] [--operations "index read" ...]
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

TOKENS, DIM = 1024, 1024
FINGERPRINT_FIELDS = {"x_encoder": "random", "x_encoder_config_hash": "0", "num_frames": 8, "image_size": 256,
                      "storage_dtype": "float16"}


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def paper_rows(count: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"key": f"clip{i:05d}", "shard": "s0", "source": "bench", "task": "caption", "media_kind": "video",
             "query": "", "target": f"caption {i}", "candidates": [], "frame_times": [0.5 * t for t in range(8)],
             "s_v_shape": [TOKENS, DIM], "s_v": rng.standard_normal(TOKENS * DIM, dtype=np.float32).astype(np.float16)}
            for i in range(count)]


# -- the previous code, the baseline ----------------------------------------------------------------
def commit_before(cache_dir: str, rows: list[dict]) -> None:
    from ops.cache.feature_cache import FeatureCache
    from ops.cache.parquet import BULK_COLUMNS, parquet_bytes, rows_to_table

    FeatureCache(cache_dir).write_bytes("s0.parquet", parquet_bytes(rows_to_table(rows, "float16"), BULK_COLUMNS))


def load_before(cache_dir: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(f"{cache_dir}/s0.parquet").to_pylist()


def index_read_before(cache_dir: str, indices: list[int]) -> list:
    import pyarrow.parquet as pq

    rows = pq.read_table(f"{cache_dir}/s0.parquet", columns=["key", "s_v_shape", "s_v"]).to_pylist()
    return [rows[i] for i in indices]


# -- one operation in a fresh process ---------------------------------------------------------------
OPERATIONS = ("commit", "train read", "read 10%", "eval load", "eval held", "index read")


def run_once(operation: str, way: str, cache_dir: str, rows: int) -> dict:
    from ops.cache.feature_cache import FeatureCache
    from ops.cache.files import CacheFileReader, CacheSource, read_shard_rows
    from ops.evaluate.held_out_rows import HeldOutRows
    from ops.evaluate.zero_shot import load_rows

    data = paper_rows(rows) if operation == "commit" else None
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status_kb("VmRSS")
    started = time.perf_counter()
    if operation == "commit":
        if way == "before":
            commit_before(cache_dir, data)
        else:
            FeatureCache(cache_dir).commit_shard("s0", data, [], "bench", "float16")
        checksum = Path(cache_dir, "s0.parquet").stat().st_size
    elif operation in ("train read", "read 10%"):
        source = CacheSource(cache_dir, ("video",), ("caption",), keep=1.0 if operation == "train read" else 0.1)
        reader = CacheFileReader((source,), ("key", "s_v", "s_v_shape", "target"))
        checksum = ",".join(key for table in reader.read_file(0, "s0", 0) for key in table["key"].to_pylist())
    elif operation == "eval load":
        loaded = load_before(cache_dir) if way == "before" else load_rows(cache_dir)
        checksum = float(sum(float(np.asarray(row["s_v"][:8], dtype=np.float32).sum()) for row in loaded))
    elif operation == "eval held":
        if way == "before":
            held = load_rows(cache_dir)
            evaluations = [held, held]
        else:
            held_out = HeldOutRows(cache_dir)
            evaluations = [(row for rows in held_out.chunks() for row in rows) for _ in range(2)]
        checksum = float(sum(float(np.asarray(row["s_v"][:8], dtype=np.float32).sum())
                             for rows in evaluations for row in rows))
    else:
        indices = [1, rows // 2, rows - 1, 0]
        found = (index_read_before(cache_dir, indices) if way == "before"
                 else read_shard_rows(cache_dir, "s0", indices, ["key", "s_v_shape", "s_v"]))
        checksum = float(sum(float(np.asarray(row["s_v"][:8], dtype=np.float32).sum()) for row in found))
    seconds = time.perf_counter() - started
    return {"peak_mb": (status_kb("VmHWM") - before) / 1024, "seconds": seconds, "checksum": checksum}


def measure(operation: str, way: str, cache_dir: str, rows: int) -> dict:
    # a fresh process per operation: no allocator caches carried over
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_once, (operation, way, cache_dir, rows))


def write_cache(cache_dir: str, rows: int, way: str) -> None:
    """The shard the readers read: one row group ("before") or today's groups, with a manifest."""
    from ops.cache.feature_cache import FeatureCache, Fingerprint

    measure("commit", way, cache_dir, rows)
    cache = FeatureCache(cache_dir)
    if cache.marker("s0") is None:  # the baseline commit wrote the data file only
        cache.write_bytes("s0.done.json", json.dumps({"rows": rows, "fingerprint": "bench"}).encode())
    cache.write_manifest(Fingerprint(**FINGERPRINT_FIELDS), cache.markers(["s0"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64, help="paper-size rows in the shard (2 MiB of S_V each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--operations", nargs="+", choices=OPERATIONS, default=list(OPERATIONS),
                        help="run only these (commit always writes the shards the others read)")
    args = parser.parse_args(argv)

    from ops.cache.parquet import ROW_GROUP_BYTES

    operations = [op for op in OPERATIONS if op in args.operations]
    runs: dict[tuple[str, str], list[dict]] = {(op, way): [] for op in operations for way in ("before", "now")}
    with tempfile.TemporaryDirectory() as tmp:
        caches = {way: f"{tmp}/{way}" for way in ("before", "now")}
        for way, cache_dir in caches.items():
            write_cache(cache_dir, args.rows, way)
        for _ in range(args.rounds):
            for op in operations:
                for way in ("before", "now"):
                    # eval held: the two ways of reading, both over today's file
                    target = (f"{tmp}/commit-{way}" if op == "commit"
                              else caches["now" if op == "eval held" else way])
                    runs[op, way].append(measure(op, way, target, args.rows))
    for op in (op for op in operations if op != "commit"):
        checksums = {run["checksum"] for way in ("before", "now") for run in runs[op, way]}
        assert len(checksums) == 1, f"{op}: the two ways read different rows: {checksums}"

    summary = {f"{op} / {way}": {"peak_mb": round(statistics.median(r["peak_mb"] for r in rs), 1),
                                 "seconds": round(statistics.median(r["seconds"] for r in rs), 3)}
               for (op, way), rs in runs.items()}
    shard_mb = args.rows * TOKENS * DIM * 2 / 2**20
    print(f"one shard of {args.rows} paper-size rows ({shard_mb:.0f} MiB of float16 S_V), row groups of "
          f"{ROW_GROUP_BYTES / 2**20:.0f} MiB, median of {args.rounds} rounds")
    print(f"  {'operation':11s} {'before: peak MiB':>16s} {'s':>7s}   {'now: peak MiB':>13s} {'s':>7s}   memory   time")
    for op in operations:
        old, new = summary[f"{op} / before"], summary[f"{op} / now"]
        print(f"  {op:11s} {old['peak_mb']:16.1f} {old['seconds']:7.2f}   {new['peak_mb']:13.1f} {new['seconds']:7.2f}"
              f"   x{new['peak_mb'] / max(old['peak_mb'], 0.1):.2f}    x{new['seconds'] / old['seconds']:.2f}")
    print(json.dumps({"config": {**vars(args), "row_group_bytes": ROW_GROUP_BYTES}, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
