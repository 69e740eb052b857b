"""A driver that starts a local instance the project's way (pipelines.cluster.ray_runtime.init_ray) and
prints, as one JSON line, the level of Ray Train's placement group cleaner logger in a worker and
in this driver, and whether that logger is the one the cleaner really logs through.

With --until-sigterm it then waits for SIGTERM, and takes 4 s to clean up once it comes (longer
than the 3 s after which abseil's failure-signal handler, in front of Ray's, aborts a driver)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time

import ray


@ray.remote(num_cpus=0)
def cleaner_logger_in_worker() -> dict:
    from ray.train.v2._internal.execution.controller import placement_group_cleaner

    from pipelines.cluster.ray_runtime import PLACEMENT_GROUP_CLEANER_LOGGER

    return {"level": logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).getEffectiveLevel(),
            "module_logger": placement_group_cleaner.logger.name}


def main() -> int:
    os.environ.pop("RAY_ADDRESS", None)  # a local instance of its own, whatever else runs here
    # Ray writes its sockets under the temp dir: a short path keeps them under the length limit
    temp_dir = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="vlj-", dir="/tmp")
    from pipelines.cluster.ray_runtime import PLACEMENT_GROUP_CLEANER_LOGGER, init_ray

    init_ray(num_cpus=1, log_to_driver=False)
    seen = ray.get(cleaner_logger_in_worker.remote())
    seen["driver_level"] = logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).getEffectiveLevel()
    print(json.dumps(seen), flush=True)
    try:
        if "--until-sigterm" in sys.argv:
            time.sleep(120)  # Ray's SIGTERM handler ends it with SystemExit
    finally:
        if "--until-sigterm" in sys.argv:
            time.sleep(4)  # a slow graceful exit: as tearing down a local instance with replicas is
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
