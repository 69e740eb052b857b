"""`vljepa export --run` picks the run's highest-step checkpoint and steps over a half-written one
(a worker or node killed mid-upload leaves it behind; Ray Train resumed from an earlier one)."""

from __future__ import annotations

import pytest
import torch

from pipelines.export import latest_checkpoint


def _checkpoint(run, name: str, step: int, truncate: bool = False):
    path = run / "ray" / "train" / name / "state.pt"
    path.parent.mkdir(parents=True)
    torch.save({"step": step, "weights": torch.zeros(4096)}, path)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path.parent


def test_the_highest_step_wins_and_a_half_written_checkpoint_is_skipped(tmp_path, capsys):
    _checkpoint(tmp_path, "checkpoint_a", 4)
    expected = _checkpoint(tmp_path, "checkpoint_b", 8)
    broken = _checkpoint(tmp_path, "checkpoint_c", 12, truncate=True)
    assert latest_checkpoint(tmp_path) == expected
    assert str(broken) in capsys.readouterr().err  # said, not silently dropped


def test_a_run_with_only_unreadable_checkpoints_says_so(tmp_path):
    _checkpoint(tmp_path, "checkpoint_a", 4, truncate=True)
    with pytest.raises(ValueError, match="no readable training checkpoint"):
        latest_checkpoint(tmp_path)
