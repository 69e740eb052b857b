"""Collation runs in Ray Data's prefetch thread, beside the training thread. If it ran a large
torch op there, that thread would get an OpenMP pool of its own: more pool threads than cores make
libgomp stop spin-waiting, and every parallel op of the training step pays a slow wake-up (steps
measured ~1.3x slower in the Ray Train worker; docs/benchmarks.md). Collation must therefore start
no OS threads; the control shows a plain torch op in a fresh thread does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts threads through Linux /proc")
def test_collate_starts_no_openmp_threads(checkpoints_dir, tiny_config):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # the intra-op pool needs >= 2 threads to show
    done = subprocess.run([sys.executable, "-m", "tests.unit.collate_threads_script", str(checkpoints_dir)],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr[-3000:]
    added = json.loads(done.stdout.strip().splitlines()[-1])
    assert added["torch_op"] >= 1  # the control: a torch op in a fresh thread starts pool threads
    assert added["collate"] == 0
