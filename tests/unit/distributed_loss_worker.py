"""Runs in spawned processes: the InfoNCE loss and its gradients under DDP with 2 gloo ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from model.loss import InfoNCELoss

BATCH_PER_RANK = 4
IN_DIM, EMBED_DIM = 6, 5


class TwoTowers(nn.Module):
    """Stands in for predictor and y-encoder: two trainable maps into a shared space."""

    def __init__(self):
        super().__init__()
        self.predict = nn.Linear(IN_DIM, EMBED_DIM)
        self.encode = nn.Linear(IN_DIM, EMBED_DIM)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, visual, text):
        return self.predict(visual), self.encode(text), self.logit_scale.exp()


def make_inputs(world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    total = BATCH_PER_RANK * world_size
    return torch.randn(total, IN_DIM, generator=generator), torch.randn(total, IN_DIM, generator=generator)


def make_model() -> TwoTowers:
    torch.manual_seed(5)
    return TwoTowers()


def single_process(world_size: int) -> dict:
    model = make_model()
    visual, text = make_inputs(world_size)
    loss = InfoNCELoss()(*model(visual, text))
    loss.backward()
    return {"loss": loss.detach(), "grads": {n: p.grad.clone() for n, p in model.named_parameters()}}


def run_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        model = make_model()
        ddp = DistributedDataParallel(model)
        visual, text = make_inputs(world_size)
        rows = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)
        loss = InfoNCELoss()(*ddp(visual[rows], text[rows]))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads}, f"{out_dir}/rank{rank}.pt")
        # both ranks done before either tears gloo down: a rank destroying its process group while
        # the other's last collective was in flight aborted now and then ("terminate called
        # without an active exception", SIGABRT): 3 runs in 20 here, none in 20 with the barrier
        dist.barrier()
    finally:
        dist.destroy_process_group()
