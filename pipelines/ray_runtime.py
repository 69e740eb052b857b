"""Connecting to Ray: a cluster when RAY_ADDRESS (or --address) says so, else a local instance."""

from __future__ import annotations

import os

import ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)


def gpus_available() -> int:
    return int(ray.cluster_resources().get("GPU", 0))
