"""The `--json` contract (one JSON object alone on the last line of stdout) against Ray's log
forwarding, which prints worker output on the driver from a background thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run_script(mode: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "tests.integration.late_log_script", mode], capture_output=True,
                          text=True, env=env, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.rstrip().splitlines()


@pytest.mark.parametrize("mode", ["plain", "held"])
def test_json_line_stays_last_while_ray_forwards_logs(mode):
    lines = run_script(mode)
    chatty = [i for i, line in enumerate(lines) if "chatty line" in line]
    result = [i for i, line in enumerate(lines) if line.startswith('{"mode"')]
    assert chatty and len(result) == 1  # the actor's output really reaches the driver's stdout
    if mode == "plain":
        # the control: printed at once, the result is overtaken by lines forwarded after it
        assert result[0] < chatty[-1]
    else:
        assert result[0] == len(lines) - 1 and json.loads(lines[-1]) == {"mode": "held"}


def test_cli_entry_point_prints_the_json_line_last(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "summary", "--preset", "tiny", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "VLJEPA_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.rstrip().splitlines()
    assert len(lines) > 1 and "total" in json.loads(lines[-1])  # the table first, the result last
