"""The driver's side of cache-features: rows streamed in any order are grouped by shard and each
shard is committed once, on writer threads; a failed commit stops the run with its error."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from ops.feature_cache import FeatureCache, Fingerprint
from pipelines.cache_features import collect_and_commit

FINGERPRINT = Fingerprint(x_encoder="tiny", x_encoder_config_hash="0", num_frames=2, image_size=8,
                          storage_dtype="float16")


class Stream:
    """The one method collect_and_commit uses of a Ray Dataset: numpy batches, here interleaved."""

    def __init__(self, shards: dict[str, int], batch_rows: int = 3):
        rows = []
        for shard, total in shards.items():
            for i in range(total):
                rows.append({"shard": shard, "shard_total": total, "key": f"{shard}-{i}",
                             "status": "ok" if i % 4 else "bad", "reason": "" if i % 4 else "decode",
                             "error_message": "", "source": "yfcc", "task": "caption", "media_kind": "video",
                             "query": "", "target": f"t{i}", "candidates": "[]",
                             "frame_times": np.array([0.0, 0.5], dtype=np.float32),
                             "s_v": np.full((4, 2), i, dtype=np.float16)})
        rng = np.random.default_rng(0)
        self.rows = [rows[j] for j in rng.permutation(len(rows))]
        self.batch_rows = batch_rows

    def iter_batches(self, batch_size=None, batch_format="numpy"):
        for start in range(0, len(self.rows), self.batch_rows):
            part = self.rows[start:start + self.batch_rows]
            batch = {k: np.array([r[k] for r in part] + [None], dtype=object)[:-1] for k in part[0]}
            yield batch


def test_every_shard_is_committed_once_with_its_rows(tmp_path):
    shards = {f"s{n}": 5 + n for n in range(9)}
    cache = FeatureCache(str(tmp_path / "cache"))
    committed = collect_and_commit(Stream(shards), cache, FINGERPRINT, writers=2)
    assert set(committed) == set(shards)
    for shard, total in shards.items():
        table = pq.read_table(tmp_path / "cache" / f"{shard}.parquet")
        good = [i for i in range(total) if i % 4]
        assert sorted(table["key"].to_pylist()) == sorted(f"{shard}-{i}" for i in good)
        assert committed[shard]["rows"] == len(good)
        assert committed[shard]["bad"] == {"decode": total - len(good)}
        assert (tmp_path / "cache" / f"{shard}.done.json").exists()


class FailingCache(FeatureCache):
    def commit_shard(self, shard, *args, **kwargs):
        if shard == "s0":
            raise OSError("disk full")
        return super().commit_shard(shard, *args, **kwargs)


def test_a_failed_commit_fails_the_run_with_its_error(tmp_path):
    with pytest.raises(OSError, match="disk full"):
        collect_and_commit(Stream({f"s{n}": 4 for n in range(6)}), FailingCache(str(tmp_path / "c")), FINGERPRINT)
    assert not (tmp_path / "c" / "s0.done.json").exists()
