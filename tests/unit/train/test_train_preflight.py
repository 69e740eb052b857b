"""What a training run checks before Ray starts: that its cache can fill a batch on every worker,
that its run directory can be made, and where its checkpoints go."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

from ops.cache.feature_cache import FeatureCache
from ops.cache.files import selected_row_count
from pipelines.cache.cache_features import fingerprint_for
from pipelines.cli.report import TRACEBACK_ENV, run_as_process


def _write_cache(root, kinds: dict[str, int], storage_dtype: str = "float16") -> str:
    """A feature cache written by the cache's own writer: `kinds` "media_kind/task" -> rows, one
    shard per kind (tiny preset's fingerprint, so a tiny-preset run accepts its features)."""
    fingerprint, _, _ = fingerprint_for("tiny", None, storage_dtype)
    cache = FeatureCache(str(root))
    shards = {}
    for index, (kind, count) in enumerate(kinds.items()):
        media_kind, task = kind.split("/")
        rows = [{"key": f"{index}-{i}", "shard": f"s{index}", "source": "yfcc", "task": task, "media_kind": media_kind,
                 "query": "", "target": f"caption {i}", "candidates": [], "frame_times": [0.0],
                 "s_v_shape": [4, 8], "s_v": np.ones(32, dtype=np.float16)} for i in range(count)]
        shards[f"s{index}"] = cache.commit_shard(f"s{index}", rows, [], fingerprint.digest(), storage_dtype)
    cache.write_manifest(fingerprint, shards)
    return str(root)


def test_the_manifest_counts_rows_by_kind_and_a_stage_selects_its_own(tmp_path):
    url = _write_cache(tmp_path / "cache", {"video/caption": 5, "video/vqa": 3, "image/caption": 2})
    assert selected_row_count(url, ("video",), ("caption",)) == (5, {"image/caption": 2, "video/caption": 5,
                                                                     "video/vqa": 3})
    assert selected_row_count(url, ("image", "video"), ("caption", "vqa"))[0] == 10
    assert selected_row_count(url, ("image",), ("vqa",))[0] == 0


def test_a_cache_from_before_the_per_kind_counts_is_counted_from_its_files(tmp_path):
    url = _write_cache(tmp_path / "cache", {"video/caption": 5, "video/vqa": 3, "image/caption": 2})
    cache = FeatureCache(url)
    manifest = cache.manifest()
    for shard in ("s0", "s2"):  # markers written before they counted kinds; s1's still does
        del manifest["shards"][shard]["kinds"]
    cache.write_bytes("manifest.json", json.dumps(manifest).encode())
    assert selected_row_count(url, ("video",), ("caption",)) == (5, {"image/caption": 2, "video/caption": 5,
                                                                     "video/vqa": 3})
    assert selected_row_count(str(tmp_path / "no-cache"), ("video",), ("caption",)) == (None, {})


def test_train_refuses_a_cache_that_cannot_fill_a_batch_per_worker_before_ray_starts(
        tiny_config, tmp_path, ray_must_not_start):
    # before: each worker raised "yields no full batch", and Ray Train retried it --max-failures times
    from pipelines.train import train

    url = _write_cache(tmp_path / "cache", {"video/caption": 6, "video/vqa": 2})
    common = ["--cache", url, "--preset", "tiny", "--steps", "1"]
    with pytest.raises(ValueError, match=r"holds 0 rows stage pretrain-image trains on \(image; caption\).*"
                                         r"it holds video/caption 6, video/vqa 2"):
        train.main(["--stage", "pretrain-image", "--out", str(tmp_path / "r1"), *common])
    with pytest.raises(ValueError, match=r"holds 8 rows stage sft .* \(2 x 5 = 10\)"):
        train.main(["--stage", "sft", "--out", str(tmp_path / "r2"), "--workers", "2", "--batch-size", "5", *common])
    # nothing was written: the corrected command needs no --resume
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    # the same for a cache whose markers predate the per-kind counts (was: left to the workers)
    cache = FeatureCache(url)
    manifest = cache.manifest()
    for counts in manifest["shards"].values():
        del counts["kinds"]
    cache.write_bytes("manifest.json", json.dumps(manifest).encode())
    with pytest.raises(ValueError, match=r"holds 8 rows stage sft .* \(2 x 5 = 10\)"):
        train.main(["--stage", "sft", "--out", str(tmp_path / "r3"), "--workers", "2", "--batch-size", "5", *common])


def test_train_decoder_refuses_a_cache_without_enough_captions(captioning_model_dir, tmp_path, ray_must_not_start):
    from pipelines.decode import train_decoder

    url = _write_cache(tmp_path / "cache", {"video/caption": 3, "video/vqa": 40})
    with pytest.raises(ValueError, match=r"holds 3 rows the Y-decoder trains on \(image or video; caption\)"):
        train_decoder.main(["--model", str(captioning_model_dir), "--cache", url, "--out", str(tmp_path / "d"),
                            "--batch-size", "4", "--steps", "1"])


def test_a_run_directory_under_a_file_is_one_line(tiny_config, tmp_path, capsys, monkeypatch, ray_must_not_start):
    from pipelines.train import train

    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    url = _write_cache(tmp_path / "cache", {"video/caption": 8})
    (tmp_path / "a-file").write_text("")
    argv = ["--stage", "pretrain-video", "--cache", url, "--out", str(tmp_path / "a-file" / "run"), "--preset", "tiny",
            "--batch-size", "4", "--steps", "1"]
    assert run_as_process(lambda: train.main(argv), "train") == 2
    err = capsys.readouterr().err
    assert err.startswith("vljepa train: error: [Errno 20] Not a directory") and "Traceback" not in err


def test_relative_checkpoint_storage_is_the_drivers_path(tmp_path, monkeypatch):
    from pipelines.train.config import TrainConfig
    from pipelines.train.driver import storage_of

    monkeypatch.chdir(tmp_path)
    config = TrainConfig(stage="sft", cache="c", out=str(tmp_path / "run"), storage="shared/ckpt")
    assert storage_of(config) == (str(tmp_path / "shared" / "ckpt"), None)
    config.storage = None
    assert storage_of(config) == (str(tmp_path / "run" / "ray"), None)


def test_an_empty_experiment_name_is_refused_before_the_run_directory_is_made(tiny_config, tmp_path, ray_must_not_start):
    from pipelines.train import train

    url = _write_cache(tmp_path / "cache", {"video/caption": 8})
    with pytest.raises(ValueError, match="--experiment must name an MLflow experiment"):
        train.main(["--stage", "sft", "--cache", url, "--out", str(tmp_path / "run"), "--preset", "tiny",
                    "--batch-size", "4", "--steps", "1", "--experiment", " "])
    assert not (tmp_path / "run").exists()  # was: an mlflow.db left behind, then MLflow's traceback


def test_several_caches_fill_batches_together_and_are_named_once(tiny_config, tmp_path, capsys, ray_must_not_start):
    """`--cache A --cache B` is one dataset: rows are counted across both (each alone is short of a
    batch per worker here, both together are not), and a cache named twice is a usage error."""
    from pipelines.train import train
    from pipelines.train.config import TrainConfig
    from pipelines.train.driver import require_full_batches

    a = _write_cache(tmp_path / "a", {"video/caption": 6})
    b = _write_cache(tmp_path / "b", {"video/caption": 5, "image/caption": 3})
    with pytest.raises(ValueError, match=r"holds 6 rows"):
        require_full_batches([a], ("video",), ("caption",), 2, 5, "stage pretrain-video")
    require_full_batches([a, b], ("video",), ("caption",), 2, 5, "stage pretrain-video")  # 11 rows >= 10
    with pytest.raises(ValueError, match=r"the 2 caches \(.*\) together hold 3 rows stage pretrain-image .*"
                                         r"they hold image/caption 3, video/caption 11"):
        train.main(["--stage", "pretrain-image", "--cache", a, "--cache", b, "--out", str(tmp_path / "run"),
                    "--preset", "tiny", "--steps", "1", "--batch-size", "2", "--workers", "2"])
    assert not (tmp_path / "run").exists()

    assert train.main(["--stage", "sft", "--cache", a, "--cache", b, "--cache", a, "--out", str(tmp_path / "run")]) == 2
    assert f"--cache names {a} more than once" in capsys.readouterr().err
    # one string is one cache: the Python API, and run directories written before lists
    assert TrainConfig.from_dict({"stage": "sft", "cache": a, "out": "o"}).cache == [a]


def test_cache_weights_are_one_positive_share_per_cache_of_a_cache_with_rows(tiny_config, captioning_model_dir,
                                                                              tmp_path, capsys, ray_must_not_start):
    from pipelines.train import train

    a = _write_cache(tmp_path / "a", {"video/caption": 6})
    b = _write_cache(tmp_path / "b", {"image/caption": 6})
    common = ["--stage", "pretrain-video", "--cache", a, "--cache", b, "--out", str(tmp_path / "run"),
              "--preset", "tiny", "--steps", "1", "--batch-size", "2"]
    for weights, message in (("0.7", "needs one positive weight per --cache (2)"),
                             ("0.7,0", "must be positive numbers separated by commas"),
                             ("0.7,x", "must be positive numbers separated by commas")):
        with pytest.raises(SystemExit) if "commas" in message else contextlib.nullcontext():
            assert train.main([*common, "--cache-weights", weights]) == 2
        assert message in capsys.readouterr().err
    from pipelines.decode import train_decoder

    assert train_decoder.main(["--model", str(captioning_model_dir), "--cache", a, "--cache", b, "--cache-weights", "1", "--out", "d"]) == 2
    assert "needs one positive weight per --cache (2)" in capsys.readouterr().err
    # a share given to a cache with none of the stage's rows: refused before Ray, naming what it holds
    with pytest.raises(ValueError, match=rf"--cache-weights gives {b} a share, but it holds no rows stage "
                                         r"pretrain-video trains on \(video; caption\); it holds image/caption 6"):
        train.main([*common, "--cache-weights", "0.5,0.5"])
    assert not (tmp_path / "run").exists()


def test_relative_paths_reach_the_workers_absolute(captioning_model_dir, tmp_path, monkeypatch):
    # before: `--eval-cache cache/eval` was read by the rank-0 worker in its own working directory,
    # and every worker failed on "no cached samples under cache/eval" (retried --max-failures times)
    from pipelines.decode import train_decoder
    from pipelines.train import train

    monkeypatch.chdir(tmp_path)
    (tmp_path / "decoder-run").mkdir()
    config, _ = train.parse_args(["--stage", "sft", "--cache", "cache/a", "--cache", "./cache/b/", "--eval-cache",
                                  "cache/eval", "--replay-cache", "s3://bucket/replay", "--replay-weight", "0.1",
                                  "--out", "run"])
    assert config.cache == [str(tmp_path / "cache" / "a"), str(tmp_path / "cache" / "b")]
    assert (config.eval_cache, config.replay_cache) == (str(tmp_path / "cache" / "eval"), "s3://bucket/replay")
    decoder, _ = train_decoder.parse_args(["--model", str(captioning_model_dir), "--cache", "cache/a", "--eval-cache",
                                           "cache/eval", "--out", "d", "--mode", "predicted",
                                           "--init-decoder", "decoder-run", "--decoder-checkpoint", "org/some-lm"])
    assert decoder.cache == [str(tmp_path / "cache" / "a")] and decoder.eval_cache == str(tmp_path / "cache" / "eval")
    assert decoder.init_decoder == str(tmp_path / "decoder-run")
    assert decoder.decoder_checkpoint == "org/some-lm"  # a hub id is not a path
