"""Row-level stages the feature-caching pipeline composes: parse a shard, decode a sample.

Every input record becomes exactly one row that travels through all stages; a failure turns the
row's status to "error" with a reason instead of dropping it, so each shard's report accounts
for every sample and the commit knows when a shard is complete (`shard_total` rows seen).
Candidate answers travel as a JSON string: a list column that is empty in some blocks would make
Arrow infer a different type per block.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from ops.data.frames import decode_image, decode_video
from ops.data.samples import SampleError, parse_sample
from ops.data.shards import iter_samples


def _row(shard: str, key: str) -> dict:
    return {"shard": shard, "key": key, "status": "ok", "reason": "", "error_message": "",
            "media_kind": "", "media": b"", "target": "", "query": "", "candidates": "[]",
            "task": "", "source": ""}


def parse_shard(url: str, shard: str) -> list[dict]:
    """All records of one shard, each a row with its position in the shard (`shard_index`, the
    order its commit restores) and the shard's row count (`shard_total`)."""
    rows = list(_parse(url, shard))
    for index, row in enumerate(rows):
        row["shard_index"], row["shard_total"] = index, len(rows)
    return rows


def _parse(url: str, shard: str) -> Iterator[dict]:
    for raw in iter_samples(url):
        row = _row(shard, raw.key)
        if raw.error is not None:
            row.update(status="error", reason=raw.error[0], error_message=raw.error[1])
            yield row
            continue
        try:
            sample = parse_sample(raw)
        except SampleError as exc:
            row.update(status="error", reason=exc.reason, error_message=exc.message)
            yield row
            continue
        row.update(media_kind=sample.media_kind, media=sample.media, target=sample.target,
                   query=sample.query, candidates=json.dumps(sample.candidates), task=sample.task,
                   source=sample.source)
        yield row


def decode_sample(row: dict, image_size: int, num_frames: int) -> dict:
    """Decode + frame-sample one row (a CPU task): media bytes -> uint8 frames and their times."""
    media = row.pop("media")
    row["frames"] = np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
    row["frame_times"] = np.zeros(0, dtype=np.float32)
    if row["status"] != "ok":
        return row
    try:
        if row["media_kind"] == "image":
            frames, times = decode_image(media, image_size)
        else:
            frames, times = decode_video(media, image_size, num_frames)
    except SampleError as exc:
        row.update(status="error", reason=exc.reason, error_message=exc.message)
        return row
    row["frames"], row["frame_times"] = frames, times
    return row
