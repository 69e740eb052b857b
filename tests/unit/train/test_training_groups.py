import pytest
import torch

from model.loss import InfoNCELoss
from model.optim import apply_update, build_optimizer


def test_x_encoder_is_frozen_and_outside_the_optimizer(tiny_model, tiny_config):
    optimizer = build_optimizer(tiny_model, base_lr=1e-3)
    tiny_model.train()
    assert not tiny_model.x_encoder.training  # stays in eval mode under .train()

    size = tiny_config.x_encoder.image_size
    s_v = tiny_model.encode_visual(torch.randn(3, 4, 3, size, size))
    assert not s_v.requires_grad
    target_ids, target_mask = tiny_model.tokenize_targets(["a", "b c", "d e f"])
    predicted, target = tiny_model(s_v, target_ids, target_mask)
    InfoNCELoss()(predicted, target, tiny_model.scale()).backward()

    assert all(p.grad is None and not p.requires_grad for p in tiny_model.x_encoder.parameters())
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in tiny_model.x_encoder.parameters()}
    # every trainable parameter is optimised, and got a gradient
    trainable = [p for p in tiny_model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == optimized
    assert all(p.grad is not None for p in tiny_model.predictor.head.parameters())
    assert all(p.grad is not None for p in tiny_model.y_encoder.head.parameters())


def test_y_encoder_learning_rate_multiplier(tiny_model):
    base_lr = 2e-4
    optimizer = build_optimizer(tiny_model, base_lr=base_lr)
    by_name = {group["name"]: group for group in optimizer.param_groups}
    assert tiny_model.config.y_encoder_lr_multiplier == pytest.approx(0.05)
    assert by_name["y_encoder"]["lr"] == pytest.approx(base_lr * 0.05)
    assert by_name["y_encoder_no_decay"]["lr"] == pytest.approx(base_lr * 0.05)
    assert by_name["predictor"]["lr"] == pytest.approx(base_lr)
    y_params = {id(p) for p in tiny_model.y_encoder.parameters()}
    for name, group in by_name.items():
        in_y = [id(p) in y_params for p in group["params"]]
        assert all(in_y) if name.startswith("y_encoder") else not any(in_y)
    assert by_name["predictor_no_decay"]["weight_decay"] == 0.0


def test_apply_update_clips_steps_schedules_and_clears(tiny_model, tiny_config):
    optimizer = build_optimizer(tiny_model, base_lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** (step + 1))
    size = tiny_config.x_encoder.image_size
    s_v = tiny_model.encode_visual(torch.randn(3, 4, 3, size, size))
    target_ids, target_mask = tiny_model.tokenize_targets(["a", "b c", "d e f"])
    predicted, target = tiny_model(s_v, target_ids, target_mask)
    (1e3 * InfoNCELoss()(predicted, target, tiny_model.scale())).backward()  # a norm far above the clip
    trainable = [p for p in tiny_model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    lr_before = scheduler.get_last_lr()[0]

    stepped_norms = []  # the gradient's norm when the optimizer steps with it: after clipping
    optimizer.register_step_pre_hook(lambda *_: stepped_norms.append(torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in trainable if p.grad is not None]))))

    norm = apply_update(optimizer, scheduler, grad_clip=1.0)

    assert float(norm) > 10.0  # the pre-clip norm is returned
    assert len(stepped_norms) == 1 and float(stepped_norms[0]) == pytest.approx(1.0, rel=1e-4)  # clipped to it
    assert any(not torch.equal(b, p) for b, p in zip(before, trainable))  # the step happened
    assert scheduler.get_last_lr()[0] == pytest.approx(lr_before / 2)  # the schedule advanced
    assert all(p.grad is None for p in trainable)  # gradients cleared
