"""A local instance started the project's way (pipelines.ray_runtime.init_ray) quiets, in its
workers, the Ray Train logger that warned every second of every training run (no dashboard, so
no State API for the placement group cleaner to ask), and only that logger."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_local_instance_workers_quiet_the_placement_group_cleaner_only():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "tests.integration.local_instance_script"], capture_output=True,
                          text=True, env=env, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # the name the hook quiets is the logger Ray's cleaner module really uses (a Ray upgrade that
    # moves it fails here, not silently)
    from pipelines.ray_runtime import PLACEMENT_GROUP_CLEANER_LOGGER

    assert seen["module_logger"] == PLACEMENT_GROUP_CLEANER_LOGGER
    assert seen["level"] == logging.ERROR  # warnings dropped in the instance's workers
    assert seen["driver_level"] < logging.ERROR  # the driver's own logging is left alone
