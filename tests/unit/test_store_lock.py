"""One writer per index store (ops/store_lock.py): a replica starting on a store another process
holds waits for it and then reads everything it wrote; a reshard is refused while a server holds
the store; a stopping replica gives its store up, and its background job puts nothing in force
after that. The other process is a real one: a flock cannot tell two claims of one process apart."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import pipelines.index_upkeep
from ops.index_log import IndexLog
from ops.index_reshard import reshard_store
from ops.store_lock import StoreInUse, StoreLock
from pipelines import index_reshard
from pipelines.report import run_as_process
from pipelines.serve_index import RetrievalIndex
from tests.index_store import snapshots

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 8
# holds a store's lock (as IndexLog does) until its stdin closes, or optionally for a while only
HOLDER = """
import sys, time
from ops.store_lock import StoreLock
lock = StoreLock(sys.argv[1])
print("held", flush=True)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
    lock.release()
    print("released", flush=True)
sys.stdin.read()
"""


def _holder(directory, for_s: float | None = None) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), *([str(for_s)] if for_s else [])],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout.readline().strip() == "held"
    return process


def _stop(process: subprocess.Popen) -> None:
    process.stdin.close()
    process.wait(timeout=30)


def _claim_elsewhere(directory) -> subprocess.CompletedProcess:
    """Another process claims the store and gives it up at once."""
    return subprocess.run([sys.executable, "-c", HOLDER, str(directory)], input="", capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def _units(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, WIDTH)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_a_store_another_process_holds_is_refused_naming_it_then_claimed_once_given_up(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(StoreInUse, match=rf"in use by .* pid {holder.pid}"):
            StoreLock(tmp_path, wait_s=0.6)
        with pytest.raises(StoreInUse):
            IndexLog(tmp_path)
    finally:
        _stop(holder)
    with StoreLock(tmp_path):  # the process gone, the kernel dropped its lock
        pass


def test_a_starting_replica_waits_for_the_store_and_says_who_holds_it(tmp_path):
    holder = _holder(tmp_path, for_s=1.5)
    told: list[str] = []
    started = time.monotonic()
    try:
        lock = StoreLock(tmp_path, wait_s=30, waiting=told.append, waiting_every_s=0.5)
        assert time.monotonic() - started >= 1.0 and told and f"pid {holder.pid}" in told[0]
        lock.release()
    finally:
        _stop(holder)


def test_claims_within_one_process_share_the_lock_until_the_last_is_given_up(tmp_path):
    first, second = StoreLock(tmp_path), StoreLock(tmp_path)
    first.release()
    first.release()  # once only: the second claim still holds it
    refused = _claim_elsewhere(tmp_path)
    assert refused.returncode != 0 and "StoreInUse" in refused.stderr
    second.release()
    done = _claim_elsewhere(tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "held"


def test_a_reshard_is_refused_while_a_server_holds_a_shard_of_the_store(tmp_path, capsys):
    shard = RetrievalIndex.func_or_class(WIDTH, str(tmp_path), "model-a")
    shard.add_many([(f"clip{i}", vector, {}) for i, vector in enumerate(_units(20, seed=1))])
    shard.close()
    holder = _holder(tmp_path)  # as a serving replica of the unsplit store
    try:
        with pytest.raises(StoreInUse, match=f"pid {holder.pid}"):
            reshard_store(tmp_path, 2)
        # `vljepa index-reshard`: a user error, exit status 2, saying who holds the store
        assert run_as_process(lambda: index_reshard.main(["--store", str(tmp_path), "--shards", "2"]),
                              "index-reshard") == 2
        assert f"vljepa index-reshard: error: index store {tmp_path} is in use by" in capsys.readouterr().err
    finally:
        _stop(holder)
    assert reshard_store(tmp_path, 2)["items"] and len(list(tmp_path.glob("shard-*-of-002"))) == 2
    halves = [_holder(tmp_path / f"shard-00{i}-of-002") for i in range(2)]  # a split server's replicas
    try:
        with pytest.raises(StoreInUse):
            reshard_store(tmp_path, 1)
    finally:
        for half in halves:
            _stop(half)


def test_a_closed_replica_gives_its_store_up_and_its_running_job_puts_nothing_in_force(tmp_path, monkeypatch):
    monkeypatch.setattr(pipelines.index_upkeep, "COMPACT_WHILE_SERVING_BYTES", 0)
    shard = RetrievalIndex.func_or_class(WIDTH, str(tmp_path), "model-a")
    assert shard.wait_for_upkeep(timeout=60)
    writing, proceed = threading.Event(), threading.Event()
    real_write = IndexLog.write

    def slow_write(log, pending, rows_of):  # the compaction is mid-write when the replica stops
        writing.set()
        proceed.wait(30)
        return real_write(log, pending, rows_of)

    monkeypatch.setattr(IndexLog, "write", slow_write)
    monkeypatch.setattr(pipelines.serve_index, "CLOSE_WAIT_S", 0.2)
    shard.add_many([(f"clip{i}", vector, {}) for i, vector in enumerate(_units(40, seed=2))])
    assert writing.wait(30)
    shard.close()  # the job still runs: given up before it commits
    with pytest.raises(RuntimeError, match="was given up"):
        shard.add("late", _units(1, seed=3)[0], {})
    proceed.set()
    assert shard.upkeep.wait(30)
    assert not snapshots(tmp_path) and not list(tmp_path.glob("*.tmp"))  # nothing put in force, staging removed
    assert _claim_elsewhere(tmp_path).returncode == 0  # another process may take the store now
    reopened = RetrievalIndex.func_or_class(WIDTH, str(tmp_path), "model-a")
    assert len(reopened.index) == 40 and "late" not in reopened.index
