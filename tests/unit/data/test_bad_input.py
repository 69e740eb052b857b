"""Every class of bad input is recorded with its reason while every good sample goes through."""

import json
import tarfile

import numpy as np

from ops.data.stages import decode_sample, parse_shard
from tests.media_fixtures import GOOD_AND_BAD, truncate_tar, write_shard


def _run(path, size=32, frames=8):
    return [decode_sample(row, size, frames) for row in parse_shard(str(path), "shard")]


def test_each_bad_sample_is_reported_and_good_ones_decode(tmp_path):
    shard = tmp_path / "00000.tar"
    write_shard(shard, GOOD_AND_BAD)
    rows = {row["key"]: row for row in _run(shard)}
    assert set(rows) == set(GOOD_AND_BAD)
    assert all(row["shard_total"] == len(GOOD_AND_BAD) for row in rows.values())
    for key, (_, expected) in GOOD_AND_BAD.items():
        row = rows[key]
        if expected == "ok":
            assert row["status"] == "ok", (key, row["error_message"])
            assert row["frames"].dtype == np.uint8 and row["frames"].shape[1:] == (32, 32, 3)
        else:
            assert (row["status"], row["reason"]) == ("error", expected), (key, row["error_message"])
            assert row["error_message"]
    assert rows["goodvideo"]["frames"].shape[0] == 8 and rows["goodimage"]["frames"].shape[0] == 1
    times = rows["goodvideo"]["frame_times"]
    assert np.all(np.diff(times) > 0)  # increasing, spread over the clip
    assert rows["goodvqa"]["query"] == "Which way?" and rows["goodvqa"]["target"] == "left"
    assert json.loads(rows["goodvqa"]["candidates"]) == ["left", "right"]


def test_truncated_tar_keeps_the_samples_before_the_damage(tmp_path):
    good = {k: v for k, v in GOOD_AND_BAD.items() if v[1] == "ok"}
    shard = tmp_path / "00001.tar"
    write_shard(shard, good)
    with tarfile.open(shard) as tar:
        members = [(m.name.split(".")[0], m.offset_data, m.offset_data + m.size) for m in tar.getmembers()]
    cut = truncate_tar(shard, 0.8)
    damaged = next(i for i, (_, start, end) in enumerate(members) if start < cut < end)
    keys = list(good)
    sample = keys.index(members[damaged][0])
    # The damaged sample is dropped. A sample is handed on once a member of the next one is read, so a
    # cut in a sample's first member also drops the (whole) sample before it: nothing says it was complete.
    first_member = damaged == 0 or members[damaged - 1][0] != members[damaged][0]
    expected = keys[: sample - 1 if first_member else sample]
    assert expected, "the cut should leave good samples before it"
    rows = _run(shard)
    ok = [r for r in rows if r["status"] == "ok"]
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1 and errors[0]["reason"] == "truncated_shard"
    assert [r["key"] for r in ok] == expected  # exactly those, in order, none invented


def test_unreadable_shard_is_one_error_record(tmp_path):
    shard = tmp_path / "00002.tar"
    shard.write_bytes(b"this is not a tar file at all" * 40)
    rows = _run(shard)
    assert [(r["status"], r["reason"]) for r in rows] == [("error", "unreadable_shard")]


def test_empty_shard_is_one_error_record(tmp_path):
    shard = tmp_path / "00003.tar"
    tarfile.open(shard, "w").close()  # a valid tar with no members
    rows = _run(shard)
    assert [(r["status"], r["reason"], r["shard_total"]) for r in rows] == [("error", "empty_shard", 1)]
