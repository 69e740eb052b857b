"""Commit one shard of the feature cache from the pipeline's output batches (no Ray in here).

A shard's featurised rows arrive spread over several output blocks, in whatever order the
streaming executor finished them. A commit picks the shard's rows out of those batches, puts
them back in the shard's own order (`shard_index`, the position in the tar), so that every run
writes the same file whatever the scheduling, and writes the features, the per-sample report and
then the marker.
"""

from __future__ import annotations

import json

import numpy as np

from ops.cache.feature_cache import FeatureCache, s_v_row

REPORT_COLUMNS = ("key", "status", "reason", "error_message")


def shard_counts(batch: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """shard -> (its rows in this batch, its rows in all). Needs only `shard` and `shard_total`."""
    counts: dict[str, tuple[int, int]] = {}
    for shard, total in zip(batch["shard"], batch["shard_total"]):
        seen, _ = counts.get(str(shard), (0, 0))
        counts[str(shard)] = (seen + 1, int(total))
    return counts


def rows_of_shard(batches: list[dict[str, np.ndarray]], shard: str) -> list[dict]:
    """The shard's rows from every batch, in the shard's order; all of them or an error."""
    rows = []
    for batch in batches:
        for i in np.flatnonzero(np.asarray(batch["shard"]).astype(str) == shard):
            rows.append({column: values[i] for column, values in batch.items()})
    rows.sort(key=lambda row: int(row["shard_index"]))
    expected = int(rows[0]["shard_total"]) if rows else 0
    if not rows or len(rows) != expected or len({int(r["shard_index"]) for r in rows}) != expected:
        raise RuntimeError(f"shard {shard}: {len(rows)} rows handed to its commit, {expected} expected")
    return rows


def commit_shard_from_batches(cache: FeatureCache, shard: str, batches: list[dict[str, np.ndarray]],
                              fingerprint_digest: str, storage_dtype: str) -> dict:
    """Write one shard (features, report, marker) from the batches holding its rows. -> its counts."""
    rows = rows_of_shard(batches, shard)
    return cache.commit_shard(shard, [cache_row(r) for r in rows if r["status"] == "ok"],
                              [{c: str(r[c]) for c in REPORT_COLUMNS} for r in rows],
                              fingerprint_digest, storage_dtype)


def cache_row(row: dict) -> dict:
    shape, flat = s_v_row(row["s_v"])
    return {"key": str(row["key"]), "shard": str(row["shard"]), "source": str(row["source"]),
            "task": str(row["task"]), "media_kind": str(row["media_kind"]), "query": str(row["query"]),
            "target": str(row["target"]), "candidates": json.loads(str(row["candidates"])),
            "frame_times": row["frame_times"].tolist(), "s_v_shape": shape, "s_v": flat}
