"""A checkpoint that cannot be loaded is one clear error naming it (tests run with HF_HUB_OFFLINE=1,
so a hub id fails at once, as on a machine without hub access)."""

import pytest

from model.build import build_vljepa
from model.checkpoint_loading import CheckpointUnavailable
from model.hub_configs import architecture_config
from model.presets import get_preset
from model.y_decoder import YDecoder, YDecoderConfig


def test_the_paper_preset_without_the_hub_names_the_checkpoint_and_the_offline_presets():
    with pytest.raises(CheckpointUnavailable, match=r"cannot load checkpoint 'facebook/vjepa2-vitl-fpc64-256'.*"
                                                    r"HF_TOKEN.*--preset minilm, tiny or paper-random"):
        build_vljepa(get_preset("paper"))


def test_a_gated_decoder_checkpoint_and_an_unknown_config_fail_the_same_way():
    with pytest.raises(CheckpointUnavailable, match="'meta-llama/Llama-3.2-1B'"):
        YDecoder.from_pretrained(YDecoderConfig(checkpoint="meta-llama/Llama-3.2-1B", embed_dim=8))
    with pytest.raises(CheckpointUnavailable, match="'someone/some-model'"):
        architecture_config("someone/some-model")


def test_an_incomplete_local_checkpoint_is_named_as_such(tmp_path, tiny_config):
    import dataclasses

    empty = tmp_path / "vjepa2"
    empty.mkdir()
    config = dataclasses.replace(tiny_config, x_encoder=dataclasses.replace(tiny_config.x_encoder, checkpoint=str(empty)))
    with pytest.raises(CheckpointUnavailable, match="not a complete save_pretrained checkpoint"):
        build_vljepa(config)
    assert issubclass(CheckpointUnavailable, ValueError)  # so `vljepa VERB` prints it as one line, exit 2


def test_cache_features_checks_the_x_encoder_before_starting_ray(tmp_path, ray_must_not_start):
    # its actors would each fail to load the checkpoint, ending in an actor-death traceback
    from pipelines.cache import cache_features


    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "00000.tar").write_bytes(b"")  # never read: the check comes first
    with pytest.raises(CheckpointUnavailable, match="'facebook/vjepa2-vitl-fpc64-256'"):
        cache_features.main(["--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "cache"), "--preset", "paper"])


def manifest_only_cache(path, x_encoder: dict[str, str]):
    """A cache as the driver's checks see it (a manifest with one shard, its marker counting enough
    rows to fill the batches): the checks under test must fail before anything reads a shard."""
    from ops.cache.feature_cache import FeatureCache, Fingerprint

    cache = FeatureCache(str(path))
    cache.write_manifest(Fingerprint(**x_encoder, num_frames=8, image_size=64, storage_dtype="float16"),
                         {"shard-000": {"rows": 512, "kinds": {"video/caption": 256, "image/caption": 256}}})
    return cache


def test_train_checks_the_presets_checkpoints_before_making_the_run(tmp_path):
    # a paper-preset cache (its fingerprint fields) trained without the hub: refused before the run
    # directory, MLflow or Ray, where each worker would otherwise fail to load Llama
    from model.encoder_identity import x_encoder_identity
    from pipelines.train import train

    cache = manifest_only_cache(tmp_path / "cache", x_encoder_identity("facebook/vjepa2-vitl-fpc64-256"))
    with pytest.raises(CheckpointUnavailable, match="'facebook/vjepa2-vitl-fpc64-256'"):
        train.main(["--stage", "sft", "--preset", "paper", "--cache", cache.url, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_train_decoder_checks_the_lm_it_starts_from_before_making_the_run(captioning_model_dir, tmp_path):
    from pipelines.decode import train_decoder

    # text mode: the cache's captions are read, not its features, so any x-encoder will do
    cache = manifest_only_cache(tmp_path / "cache", {"x_encoder": "x", "x_encoder_config_hash": "0"})
    with pytest.raises(CheckpointUnavailable, match="'someone/causal-lm'"):
        train_decoder.main(["--model", str(captioning_model_dir), "--cache", cache.url,
                            "--out", str(tmp_path / "run"), "--decoder-checkpoint", "someone/causal-lm"])
    assert not (tmp_path / "run").exists()
