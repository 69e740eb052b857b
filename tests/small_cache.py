"""A small feature cache of 20 rows of every scored kind (image and video captions, VQA) over two
shards, for tests of reading a cache a row group at a time: with ROW_GROUP_BYTES patched to
3 * 8 * 64 * 2, three rows a group."""

from __future__ import annotations

import numpy as np

from ops.cache.feature_cache import FeatureCache, Fingerprint

CAPTIONS = ["a red ball moves left", "a blue cube moves up", "a green triangle moves down", "a yellow ball"]
SMALL_GROUP_BYTES = 3 * 8 * 64 * 2  # three 8-token rows of 64 float16 a group


def write_small_cache(url: str) -> tuple[FeatureCache, list[dict]]:
    """-> (the cache, its rows in file order): shard a holds rows 0-10, shard b rows 11-19."""
    rng = np.random.default_rng(0)
    rows = [{"key": f"k{i:02d}", "shard": "s", "source": "t", "media_kind": "video" if i % 4 else "image",
             "task": "vqa" if i % 5 == 0 else "caption", "query": "Which colour?" if i % 5 == 0 else "",
             "target": "red" if i % 5 == 0 else CAPTIONS[i % 4],
             "candidates": ["red", "blue", "green"] if i % 5 == 0 else [], "frame_times": [0.0],
             "s_v_shape": [8, 64], "s_v": rng.standard_normal(8 * 64).astype(np.float16)} for i in range(20)]
    fingerprint = Fingerprint(x_encoder="x", x_encoder_config_hash="0", num_frames=1, image_size=8, storage_dtype="float16")
    cache = FeatureCache(url)
    for shard, part in (("a", rows[:11]), ("b", rows[11:])):
        cache.commit_shard(shard, part, [], fingerprint.digest(), "float16")
    cache.write_manifest(fingerprint, cache.markers(["a", "b"]))
    return cache, rows
