"""A shard's features streamed to S3 (moto's server on 127.0.0.1): a file larger than s3fs's upload
block goes up as a multipart upload and appears whole, and a commit failing part-way leaves no
object and no unfinished upload behind."""

from __future__ import annotations

import fsspec
import numpy as np
import pytest
import s3fs

import ops.cache.parquet as cache_parquet
from ops.cache.feature_cache import FeatureCache, Fingerprint
from ops.evaluate.zero_shot import load_rows
from tests.unit.cache.test_feature_cache_format import make_rows

BUCKET = "vljepa-stream"
BLOCK = 5 * 2**20  # S3's smallest part: s3fs then uploads a part every 5 MiB written
FINGERPRINT = Fingerprint(x_encoder="x", x_encoder_config_hash="0", num_frames=1, image_size=8, storage_dtype="float16")


@pytest.fixture
def small_upload_blocks(s3_endpoint, monkeypatch):
    """s3fs instances made from here on buffer 5 MiB per part (its default, 50 MiB, would need a
    larger shard to reach a second part)."""
    monkeypatch.setitem(fsspec.config.conf, "s3", {"default_block_size": BLOCK})
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()


def unfinished_uploads(fs: s3fs.S3FileSystem) -> list:
    return fs.call_s3("list_multipart_uploads", Bucket=BUCKET).get("Uploads", [])


def test_a_shard_larger_than_a_part_appears_whole(small_upload_blocks, monkeypatch):
    fs = small_upload_blocks
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", 2**20)
    rows = make_rows([2**19] * 14)  # 14 MiB of float16 S_V in 1 MiB groups: three parts
    cache = FeatureCache(f"s3://{BUCKET}/whole")
    counts = cache.commit_shard("s0", rows, [], FINGERPRINT.digest(), "float16")
    cache.write_manifest(FINGERPRINT, cache.markers(["s0"]))
    assert counts["bytes"] == fs.size(f"{BUCKET}/whole/s0.parquet") > 2 * BLOCK
    loaded = load_rows(cache.url)
    assert all(np.array_equal(back["s_v"], row["s_v"]) for row, back in zip(rows, loaded, strict=True))
    assert unfinished_uploads(fs) == []


def test_a_commit_failing_after_parts_were_sent_leaves_nothing(small_upload_blocks, monkeypatch):
    fs = small_upload_blocks
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", 2**20)
    rows = make_rows([2**19] * 14)
    rows[13]["candidates"] = 7  # Arrow refuses the last group, after two parts went up
    cache = FeatureCache(f"s3://{BUCKET}/failed")
    with pytest.raises(Exception, match="list"):
        cache.commit_shard("s0", rows, [], FINGERPRINT.digest(), "float16")
    assert not fs.exists(f"{BUCKET}/failed/s0.parquet") and cache.marker("s0") is None
    assert unfinished_uploads(fs) == []  # aborted, not left to be billed
