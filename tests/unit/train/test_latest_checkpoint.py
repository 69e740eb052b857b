"""`vljepa export --run` picks the run's highest-step checkpoint and steps over a half-written one
(a worker or node killed mid-upload leaves it behind; Ray Train resumed from an earlier one). It
decides from the small records beside the states, reading no state; a remote checkpoint is fetched
into a temporary directory that goes when the export is done."""

from __future__ import annotations

import tempfile

import fsspec
import pytest
import torch

from pipelines.train.checkpoints import STATE_RECORD, latest_checkpoint, load_state, local_checkpoint, write_state


def _checkpoint(run, name: str, step: int, truncate: bool = False, record: bool = True):
    directory = run / "ray" / "train" / name
    directory.mkdir(parents=True)
    state = {"step": step, "model": {"weights": torch.full((4096,), float(step))}}
    if record:
        write_state(state, directory)
    else:  # written before the records
        torch.save(state, directory / "state.pt")
    if truncate:
        data = (directory / "state.pt").read_bytes()
        (directory / "state.pt").write_bytes(data[: len(data) // 2])
    return directory


@pytest.mark.parametrize("record", [True, False])
def test_the_highest_step_wins_and_a_half_written_checkpoint_is_skipped(tmp_path, capsys, record):
    _checkpoint(tmp_path, "checkpoint_a", 4, record=record)
    expected = _checkpoint(tmp_path, "checkpoint_b", 8, record=record)
    broken = _checkpoint(tmp_path, "checkpoint_c", 12, truncate=True, record=record)
    assert latest_checkpoint(tmp_path) == str(expected)
    assert str(broken) in capsys.readouterr().err  # said, not silently dropped


def test_the_records_decide_without_reading_a_state(tmp_path):
    _checkpoint(tmp_path, "checkpoint_a", 4)
    unread = _checkpoint(tmp_path, "checkpoint_b", 8)
    size = (unread / "state.pt").stat().st_size
    (unread / "state.pt").write_bytes(b"\0" * size)  # not a torch file at all, of the recorded size
    assert latest_checkpoint(tmp_path) == str(unread)  # chosen from its record: the state was never read
    old = _checkpoint(tmp_path, "checkpoint_c", 6, record=False)  # mixed with one from before the records
    assert latest_checkpoint(tmp_path) == str(unread) and not (old / STATE_RECORD).exists()


def test_a_run_with_only_unreadable_checkpoints_says_so(tmp_path):
    _checkpoint(tmp_path, "checkpoint_a", 4, truncate=True)
    with pytest.raises(ValueError, match="no readable training checkpoint"):
        latest_checkpoint(tmp_path)


def test_a_remote_checkpoint_is_fetched_into_a_directory_removed_after_the_export(tmp_path, monkeypatch):
    local = tmp_path / "written"
    _checkpoint(local, "checkpoint_a", 4)
    _checkpoint(local, "checkpoint_b", 8)
    storage = f"memory://{tmp_path.name}/storage"  # an object store's kind of filesystem: not local
    memory = fsspec.filesystem("memory")
    memory.put(str(local / "ray") + "/", f"/{tmp_path.name}/storage/", recursive=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    best = latest_checkpoint(tmp_path / "run", storage)
    assert best.startswith("memory://")  # a URL, fetched from the store below
    assert fsspec.core.url_to_fs(best)[1] == fsspec.core.url_to_fs(f"{storage}/train/checkpoint_b")[1]
    with local_checkpoint(best) as directory:
        state = load_state(directory)
        assert state["step"] == 8 and torch.equal(state["model"]["weights"], torch.full((4096,), 8.0))
        assert directory.parent == tmp_path / "tmp"
    assert not list((tmp_path / "tmp").iterdir())  # nothing left behind
    memory.rm(f"/{tmp_path.name}", recursive=True)


def test_a_local_checkpoint_is_used_where_it_is(tmp_path):
    directory = _checkpoint(tmp_path, "checkpoint_a", 4)
    with local_checkpoint(str(directory)) as found:
        assert found == directory
    assert (directory / "state.pt").exists()
