import math

import torch
import torch.multiprocessing as mp

from model.loss import InfoNCELoss
from tests.unit import distributed_loss_worker as worker


def _reference_infonce(predicted, target, scale):
    """Bi-directional InfoNCE written out element by element."""
    p = [v / v.norm() for v in predicted]
    t = [v / v.norm() for v in target]
    n = len(p)
    total = 0.0
    for i in range(n):
        row = [scale * float(p[i] @ t[j]) for j in range(n)]  # Ŝ_Y_i against every S_Y
        col = [scale * float(p[j] @ t[i]) for j in range(n)]  # S_Y_i against every Ŝ_Y
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * n)


def test_infonce_matches_reference():
    torch.manual_seed(0)
    predicted, target = torch.randn(5, 7), torch.randn(5, 7)
    scale = torch.tensor(3.5)
    loss = InfoNCELoss()(predicted, target, scale)
    assert math.isclose(loss.item(), _reference_infonce(predicted, target, 3.5), rel_tol=1e-5)
    # matched pairs lower the loss: perfectly aligned embeddings beat random ones
    assert InfoNCELoss()(target, target, scale) < loss


def test_gathered_loss_on_two_processes_equals_the_concatenated_batch(tmp_path):
    world_size = 2
    mp.spawn(worker.run_rank, args=(world_size, str(tmp_path / "init"), str(tmp_path)),
             nprocs=world_size, join=True)
    expected = worker.single_process(world_size)
    for rank in range(world_size):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], expected["loss"], rtol=1e-5, atol=1e-6)
        assert result["grads"].keys() == expected["grads"].keys()
        for name, grad in expected["grads"].items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
