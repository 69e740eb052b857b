"""A worker resuming from a checkpoint restores its optimizer onto the parameters it trains, on their
device. Optimizer.load_state_dict places each moment on its parameter's device as it is then; the
loops used to move the module afterwards, so on a GPU the moments stayed on the CPU and the first
resumed step failed. The meta device stands in for a GPU here: moving a module there replaces its
parameters, so an optimizer built before the move would not even hold the module's parameters.
(Not for the decoder: a move to meta also unties its tied embeddings, which a GPU keeps; its
restore is checked on the CPU, the same order of building as the training loop's.)"""

from __future__ import annotations

import pytest
import torch

from model.config import VLJepaConfig
from pipelines.decode.config import DecoderTrainConfig
from pipelines.decode.loop import decoder_setup
from pipelines.train.config import TrainConfig
from pipelines.train.loop import training_setup

META = torch.device("meta")


def _stepped_state(module: torch.nn.Module, optimizer, scheduler, weights: dict) -> dict:
    """A checkpoint's state after one optimizer step on the CPU."""
    for parameter in (p for p in module.parameters() if p.requires_grad):
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    scheduler.step()
    return {**weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(), "step": 1, "pass": 0, "consumed": 3}


def _assert_restored_on(module: torch.nn.Module, optimizer, device: torch.device) -> None:
    trained = {id(p) for p in module.parameters() if p.requires_grad}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in held} == trained  # the optimizer steps the module's own parameters
    moments = [(p, value) for p in held for key, value in optimizer.state[p].items() if key != "step"]
    assert moments and all(value.device == p.device == device for p, value in moments)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # meta weights hold no values
def test_a_resumed_training_worker_holds_its_moments_beside_its_parameters(monkeypatch, checkpoints_dir):
    monkeypatch.setenv("VLJEPA_HOME", str(checkpoints_dir.parent / "home"))
    config = TrainConfig(stage="sft", cache="unused", out="unused", preset="tiny")
    model, optimizer, scheduler, position = training_setup(config, torch.device("cpu"), None)
    assert position == (0, 0, 0)
    trainable = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    state = _stepped_state(model, optimizer, scheduler, {"model": trainable})

    model, optimizer, scheduler, position = training_setup(config, META, state)
    assert position == (1, 0, 3) and scheduler.last_epoch == 1
    _assert_restored_on(model, optimizer, META)


def test_a_resumed_decoder_worker_continues_its_optimizer(monkeypatch, checkpoints_dir, tiny_config):
    monkeypatch.setenv("VLJEPA_HOME", str(checkpoints_dir.parent / "home"))
    config = DecoderTrainConfig(model="unused", cache="unused", out="unused")
    model_config = VLJepaConfig.from_dict(tiny_config.to_dict())
    decoder, optimizer, scheduler, _ = decoder_setup(config, model_config, torch.device("cpu"), None)
    state = _stepped_state(decoder, optimizer, scheduler, {"decoder": decoder.state_dict()})
    saved = {name: optimizer.state[p]["exp_avg"].clone() for name, p in decoder.named_parameters()}

    decoder, optimizer, scheduler, position = decoder_setup(config, model_config, torch.device("cpu"), state)
    assert position == (1, 0, 3) and scheduler.last_epoch == 1
    _assert_restored_on(decoder, optimizer, torch.device("cpu"))
    assert all(torch.equal(optimizer.state[p]["exp_avg"], saved[name]) for name, p in decoder.named_parameters())
