"""Shared fixtures: tiny checkpoints written once per test session into a temporary home."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub


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
