"""Shared fixtures: tiny checkpoints written once per test session into a temporary home."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub

from pipelines.cluster.ray_runtime import prefer_serve_throughput_mode  # noqa: E402

# Serve as `vljepa serve` does by default, chosen before any test imports ray.serve or starts Ray:
# every process reads it once.
prefer_serve_throughput_mode()


@pytest.fixture
def ray_must_not_start(monkeypatch):
    """For checks that must come before Ray starts: starting it fails the test. (ray.is_initialized()
    cannot tell: in the full suite the integration tests' session instance is already up.)"""
    def fail(*args, **kwargs):
        raise AssertionError("Ray was started before the check")

    monkeypatch.setattr("pipelines.cluster.ray_runtime.init_ray", fail)


@pytest.fixture(scope="session")
def checkpoints_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def tiny_config(checkpoints_dir):
    from model.presets import get_preset

    return get_preset("tiny", checkpoints_dir)


@pytest.fixture(scope="session")
def minilm_config(checkpoints_dir):
    from model.presets import get_preset

    return get_preset("minilm", checkpoints_dir)


@pytest.fixture
def tiny_model(tiny_config):
    from model.build import build_vljepa

    torch.manual_seed(0)
    return build_vljepa(tiny_config)


@pytest.fixture(scope="session")
def minilm_model(minilm_config):
    from model.build import build_vljepa

    torch.manual_seed(0)
    return build_vljepa(minilm_config).eval()


CAPTIONS = ["a red ball moves left", "a blue cube moves up", "a green triangle moves down", "a yellow ball"]


@pytest.fixture(scope="session")
def captioning_model_dir(minilm_config, tmp_path_factory):
    """An exported minilm model with a Y-decoder fitted (noise-free) to the y-encoder's S_Y of
    CAPTIONS: small enough to train in seconds, trained enough that decoding is meaningful."""
    from model.build import build_vljepa
    from model.export import save_model
    from model.presets import y_decoder_preset
    from model.y_decoder import YDecoder
    from model.y_decoder_export import save_y_decoder

    torch.manual_seed(0)
    model = build_vljepa(minilm_config).eval()
    out = tmp_path_factory.mktemp("captioning") / "model"
    save_model(model, out, metadata={"preset": "minilm", "steps": 0, "caption_prompt": ""})
    decoder = YDecoder.from_pretrained(y_decoder_preset(minilm_config))
    embeddings = model.embed_texts(CAPTIONS)
    ids, mask = decoder.tokenize_targets(CAPTIONS)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=3e-3)
    for _ in range(80):
        loss = decoder(embeddings, ids, mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    save_y_decoder(decoder.eval(), out / "y_decoder")
    return out
