"""The in-training evaluation reads its held-out rows again at each evaluation instead of holding
their S_V: the same metrics as rows held in memory; a remote cache is read from the store once."""

from __future__ import annotations

import gc
import os

import fsspec
import pytest

import ops.cache.parquet as cache_parquet
from ops.evaluate import zero_shot as evaluation
from ops.evaluate.held_out_rows import HeldOutRows
from tests.small_cache import SMALL_GROUP_BYTES, write_small_cache


def _keys_and_features(chunks) -> list[tuple[str, bytes]]:
    return [(row["key"], row["s_v"].tobytes()) for rows in chunks for row in rows]


@pytest.fixture
def small_groups(monkeypatch):
    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", SMALL_GROUP_BYTES)


@pytest.mark.parametrize("max_samples", [None, 7])
def test_a_local_cache_is_read_again_each_time_and_scores_as_rows_held(minilm_model, tmp_path, small_groups, max_samples):
    cache, _ = write_small_cache(str(tmp_path / "cache"))
    held_out = HeldOutRows(cache.url, max_samples)
    assert held_out.spool is None  # local: nothing copied
    expected = evaluation.load_rows(cache.url, max_samples)
    for _ in range(2):  # every evaluation reads the rows afresh, row group by row group
        chunks = list(held_out.chunks())
        assert max(len(rows) for rows in chunks) <= 3
        assert _keys_and_features(chunks) == _keys_and_features([expected])
    assert (evaluation.evaluate_chunks(minilm_model, held_out.chunks(), "a prompt")
            == evaluation.evaluate(minilm_model, expected, "a prompt"))


def test_a_remote_cache_is_read_from_the_store_once_and_its_spool_removed(minilm_model, tmp_path, small_groups):
    url = f"memory://{tmp_path.name}/cache"  # an object store's kind of filesystem: not local
    cache, _ = write_small_cache(url)
    expected = evaluation.load_rows(url, 13)
    scored = evaluation.evaluate(minilm_model, expected, "a prompt")
    held_out = HeldOutRows(url, 13, spool_parent=str(tmp_path))
    spool = held_out.spool
    assert spool is not None and spool.parent == tmp_path and len(list(spool.glob("*.parquet"))) == 5  # a: 3+3+3+2 rows, then 2 of b
    cache.clear()  # the store is gone: evaluations read the spool only
    assert not fsspec.filesystem("memory").exists(url)
    for _ in range(2):
        assert _keys_and_features(held_out.chunks()) == _keys_and_features([expected])
        assert evaluation.evaluate_chunks(minilm_model, held_out.chunks(), "a prompt") == scored
    held_out.close()
    assert not spool.exists()
    cache, _ = write_small_cache(url)
    again = HeldOutRows(url, 13, spool_parent=str(tmp_path))
    spool = again.spool
    del again  # dropped without close(): removed all the same
    gc.collect()
    assert not spool.exists()
    cache.clear()


def test_an_empty_cache_fails_when_training_starts_not_at_the_first_evaluation(tmp_path):
    with pytest.raises(ValueError, match="no cached samples"):
        HeldOutRows(str(tmp_path / "nothing-here"))


def test_a_spool_left_by_a_killed_process_is_removed_by_the_next_one(tmp_path, small_groups):
    import json
    import socket
    import subprocess
    import sys

    from ops.evaluate.held_out_rows import SPOOL_OWNER

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # a process of this host that has ended

    def spool(name: str, host: str, pid: int):
        path = tmp_path / name
        path.mkdir()
        (path / SPOOL_OWNER).write_text(json.dumps({"host": host, "pid": pid}))
        (path / "000000.parquet").write_bytes(b"rows")
        return path

    orphan = spool("vljepa-eval-orphan", socket.gethostname(), dead_pid)
    running = spool("vljepa-eval-running", socket.gethostname(), os.getpid())
    elsewhere = spool("vljepa-eval-elsewhere", "another-host", dead_pid)  # a shared directory: not ours to judge
    being_made = tmp_path / "vljepa-eval-new"
    being_made.mkdir()  # no owner file yet
    url = f"memory://{tmp_path.name}/cache"
    cache, _ = write_small_cache(url)
    held_out = HeldOutRows(url, 4, spool_parent=str(tmp_path))
    assert not orphan.exists()
    assert running.exists() and elsewhere.exists() and being_made.exists()
    assert json.loads((held_out.spool / SPOOL_OWNER).read_text()) == {"host": socket.gethostname(), "pid": os.getpid()}
    assert _keys_and_features(held_out.chunks()) == _keys_and_features([evaluation.load_rows(url, 4)])
    held_out.close()
    cache.clear()
