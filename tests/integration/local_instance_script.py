"""A driver that starts a local instance the project's way (pipelines.ray_runtime.init_ray) and
prints, as one JSON line, the level of Ray Train's placement group cleaner logger in a worker and
in this driver, and whether that logger is the one the cleaner really logs through."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import ray


@ray.remote(num_cpus=0)
def cleaner_logger_in_worker() -> dict:
    from ray.train.v2._internal.execution.controller import placement_group_cleaner

    from pipelines.ray_runtime import PLACEMENT_GROUP_CLEANER_LOGGER

    return {"level": logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).getEffectiveLevel(),
            "module_logger": placement_group_cleaner.logger.name}


def main() -> int:
    os.environ.pop("RAY_ADDRESS", None)  # a local instance of its own, whatever else runs here
    # Ray writes its sockets under the temp dir: a short path keeps them under the length limit
    temp_dir = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="vlj-", dir="/tmp")
    from pipelines.ray_runtime import PLACEMENT_GROUP_CLEANER_LOGGER, init_ray

    init_ray(num_cpus=1, log_to_driver=False)
    seen = ray.get(cleaner_logger_in_worker.remote())
    seen["driver_level"] = logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).getEffectiveLevel()
    print(json.dumps(seen), flush=True)
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
