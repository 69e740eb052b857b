"""Ray Serve's throughput-optimized mode is chosen before ray.serve is imported, and the
environment's own choice stands (each case in a fresh interpreter: Serve reads it at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import json, os, sys
if sys.argv[1] == "serve-imported-first":
    import ray.serve  # noqa: F401
from pipelines.cluster.ray_runtime import SERVE_THROUGHPUT_ENV, prefer_serve_throughput_mode
on = prefer_serve_throughput_mode()
from ray.serve._private import constants
print(json.dumps({"on": on, "env": os.environ.get(SERVE_THROUGHPUT_ENV),
                  "serve_sees": constants.RAY_SERVE_THROUGHPUT_OPTIMIZED,
                  "drain_s": constants.RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S}))
"""


@pytest.mark.parametrize("preset, order, expected", [
    # the project's default, with a short drain (a local instance has no load balancer to wait for)
    (None, "helper-first", {"on": True, "env": "1", "serve_sees": True, "drain_s": 2.0}),
    ("0", "helper-first", {"on": False, "env": "0", "serve_sees": False, "drain_s": 30.0}),  # opted out
    (None, "serve-imported-first", {"on": False, "env": None, "serve_sees": False, "drain_s": 30.0}),  # too late
])
def test_the_mode_is_set_before_serve_reads_it(preset, order, expected):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S")}
    if preset is not None:
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = preset
    result = subprocess.run([sys.executable, "-c", PROBE, order], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
