"""cache-features on a real Ray instance: bad input, re-runs, fingerprints, a killed driver, S3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import s3fs

from ops.cache.feature_cache import FeatureCache
from pipelines.cache import cache_features
from pipelines.cache.commits import commit_stream
from pipelines.cluster.exported_metrics import scrape, summed, wait_for
from tests.media_fixtures import GOOD_AND_BAD, write_shard


def _run(capsys, *args) -> dict:
    assert cache_features.main([*args, "--preset", "tiny", "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _features(cache_dir) -> dict:
    """key -> (target, S_V shape, S_V values) over every committed shard."""
    out = {}
    for path in sorted(cache_dir.glob("*.parquet")):
        if not path.name.endswith(".report.parquet"):
            for row in pq.read_table(path).to_pylist():
                out[row["key"]] = (row["target"], row["s_v_shape"], row["s_v"])
    return out


def test_bad_samples_are_reported_and_good_ones_cached(ray_instance, metrics_port, sample_data, tmp_path, capsys):
    shards = tmp_path / "shards"
    shutil.copytree(sample_data / "train", shards)
    write_shard(shards / "mixed-99999.tar", GOOD_AND_BAD)
    cache = tmp_path / "mixed-cache"  # a name no other cache of the session has: its metrics are this run's
    result = _run(capsys, "--shards", str(shards), "--out", str(cache))
    expected_bad = sum(1 for _, status in GOOD_AND_BAD.values() if status != "ok")
    assert sum(result["bad"].values()) == expected_bad
    assert result["bad"]["corrupt_video"] == 2 and result["bad"]["missing_text"] == 1
    # the same counts, as Prometheus reads them off Ray's metrics agent while a job runs
    shards_done = wait_for(metrics_port, "ray_vljepa_cache_shards_committed_total",
                           lambda n: n >= result["shards_processed"], cache="mixed-cache")
    assert shards_done == result["shards_processed"] == len(list(shards.glob("*.tar")))
    exported_now = scrape(metrics_port)
    assert summed(exported_now, "ray_vljepa_cache_samples_cached_total", cache="mixed-cache") == result["cached"]
    assert {labels["reason"]: value for name, labels, value in exported_now
            if name == "ray_vljepa_cache_samples_bad_total" and labels.get("cache") == "mixed-cache"} == result["bad"]
    assert summed(exported_now, "ray_vljepa_cache_bytes_written_total", cache="mixed-cache") == result["bytes_written"]
    assert summed(exported_now, "ray_vljepa_cache_samples_cached_total", cache="mixed-cache", kind="video/caption") > 0
    report = pq.read_table(cache / "mixed-99999.report.parquet").to_pylist()
    assert {r["key"]: r["reason"] or "ok" for r in report} == {k: v for k, (_, v) in GOOD_AND_BAD.items()}
    cached = pq.read_table(cache / "mixed-99999.parquet").to_pylist()
    assert sorted(r["key"] for r in cached) == sorted(k for k, (_, v) in GOOD_AND_BAD.items() if v == "ok")
    row = next(r for r in cached if r["key"] == "goodvideo")
    n, d = row["s_v_shape"]
    assert len(row["s_v"]) == n * d and row["target"] == "a red ball moves left" and len(row["frame_times"]) == 8


def test_rerun_skips_done_shards_and_refuses_other_settings(ray_instance, sample_data, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = _run(capsys, "--shards", str(sample_data / "train"), "--out", str(cache))
    assert first["shards_processed"] > 1 and first["shards_skipped"] == 0
    second = _run(capsys, "--shards", str(sample_data / "train"), "--out", str(cache))
    assert second["shards_processed"] == 0 and second["shards_skipped"] == first["shards_processed"]

    assert cache_features.main(["--shards", str(sample_data / "train"), "--out", str(cache),
                                "--preset", "tiny", "--frames", "4"]) == 2
    assert "--overwrite" in capsys.readouterr().err

    dry = _run(capsys, "--shards", str(sample_data / "train"), "--out", str(cache), "--frames", "4", "--dry-run")
    assert set(dry["shards"].values()) == {"stale"}
    replaced = _run(capsys, "--shards", str(sample_data / "train"), "--out", str(cache), "--frames", "4", "--overwrite")
    assert replaced["shards_processed"] == first["shards_processed"]
    assert json.loads((cache / "manifest.json").read_text())["fingerprint_fields"]["num_frames"] == 4


def test_killed_driver_then_rerun_equals_an_uninterrupted_run(ray_instance, sample_data, tmp_path, capsys):
    reference = tmp_path / "reference"
    _run(capsys, "--shards", str(sample_data / "train"), "--out", str(reference))

    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "pipelines.cache.cache_features", "--shards", str(sample_data / "train"),
                               "--out", str(interrupted), "--preset", "tiny", "--batch-size", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(interrupted.glob("*.done.json")):
        assert driver.poll() is None, "driver finished before it could be killed"
        assert time.monotonic() < deadline, "no shard was committed in time"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    driver.wait()
    markers = len(list(interrupted.glob("*.done.json")))
    assert markers < len(list(reference.glob("*.done.json"))), "killed too late to test anything"

    resumed = _run(capsys, "--shards", str(sample_data / "train"), "--out", str(interrupted))
    assert resumed["shards_skipped"] >= markers
    resumed_features = _features(interrupted)
    assert resumed_features and resumed_features == _features(reference)
    # byte for byte: each shard's rows are committed in the shard's order, whatever the scheduling
    for path in reference.glob("*.parquet"):
        assert (interrupted / path.name).read_bytes() == path.read_bytes(), path.name


def test_several_shards_per_parse_task_give_the_same_cache(ray_instance, sample_data, tmp_path, capsys, monkeypatch):
    """Past MAX_INPUT_BLOCKS shards, consecutive shards share a parse task; the cache is unchanged."""
    reference, grouped = tmp_path / "reference", tmp_path / "grouped"
    first = _run(capsys, "--shards", str(sample_data / "train"), "--out", str(reference))
    monkeypatch.setattr(cache_features, "MAX_INPUT_BLOCKS", 3)
    second = _run(capsys, "--shards", str(sample_data / "train"), "--out", str(grouped))
    assert second["shards_processed"] == first["shards_processed"] > 3
    assert sorted(p.name for p in grouped.iterdir()) == sorted(p.name for p in reference.iterdir())
    for path in reference.glob("*.parquet"):
        assert (grouped / path.name).read_bytes() == path.read_bytes(), path.name


def test_a_failed_commit_fails_the_run_with_its_error(ray_instance, tmp_path):
    """Commits run as Ray tasks; the driver surfaces a commit's error instead of finishing."""
    rows = [{"shard": f"s{n}", "shard_index": i, "shard_total": 3, "key": f"s{n}-{i}", "status": "ok", "reason": "",
             "error_message": "", "source": "yfcc", "task": "caption", "media_kind": "video", "query": "",
             "target": "t", "candidates": "[]", "frame_times": np.zeros(2, dtype=np.float32),
             "s_v": np.ones((4, 2), dtype=np.float16)} for n in range(2) for i in range(3)]
    (tmp_path / "a-file").write_text("not a directory")
    unwritable = FeatureCache(str(tmp_path / "a-file" / "cache"))
    with pytest.raises(Exception, match="Not a directory|File exists"):
        commit_stream(ray.data.from_items(rows, override_num_blocks=3), unwritable, "digest", "float16")

    good = FeatureCache(str(tmp_path / "cache"))
    counts, stage = commit_stream(ray.data.from_items(rows, override_num_blocks=4), good, "digest", "float16")
    assert {shard: c["rows"] for shard, c in counts.items()} == {"s0": 3, "s1": 3}
    assert stage["stage"] == "Commit (tasks)" and stage["rows"] == 6  # every row, bad ones included
    assert pq.read_table(tmp_path / "cache" / "s1.parquet")["key"].to_pylist() == ["s1-0", "s1-1", "s1-2"]


def test_shards_from_s3_and_cache_to_s3(ray_instance, sample_data, s3_endpoint, capsys):
    fs = s3fs.S3FileSystem()
    fs.mkdir("vljepa-test")
    fs.put(str(sample_data / "train") + "/", "vljepa-test/data/train/", recursive=True)
    result = _run(capsys, "--shards", "s3://vljepa-test/data/train", "--out", "s3://vljepa-test/cache")
    assert result["cached"] > 0 and result["bad"] == {}
    names = {p.rsplit("/", 1)[-1] for p in fs.ls("vljepa-test/cache")}
    assert "manifest.json" in names and any(n.endswith(".done.json") for n in names)
    # the manifest lists every shard: the driver's listing sees the markers its commit tasks wrote
    manifest = json.loads(fs.cat_file("vljepa-test/cache/manifest.json"))
    assert len(manifest["shards"]) == len(fs.glob("vljepa-test/data/train/*.tar"))
    assert sum(m["rows"] for m in manifest["shards"].values()) == result["cached"]
    again = _run(capsys, "--shards", "s3://vljepa-test/data/train", "--out", "s3://vljepa-test/cache")
    assert again["shards_processed"] == 0
    # a cache in a bucket that does not exist: one line before any shard is decoded
    with pytest.raises(PermissionError, match="cannot write the feature cache at s3://no-such-bucket/cache"):
        cache_features.main(["--shards", "s3://vljepa-test/data/train", "--out", "s3://no-such-bucket/cache",
                             "--preset", "tiny"])
