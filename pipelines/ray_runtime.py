"""Connecting to Ray: a cluster when RAY_ADDRESS (or --address) says so, else a local instance."""

from __future__ import annotations

import os

import ray
import ray.data


# Ray Data's per-operator resource reservation (on by default) sets aside a share of the cluster
# for every operator's minimum; on a small cluster that caps the CPU decode stage at half the
# cores while the rest sits idle (measured on 2 cores: decode efficiency 0.52-0.65 -> 0.73-0.88,
# feature caching +13%; docs/benchmarks.md). Object-store backpressure still bounds memory without it.
# VLJEPA_DATA_OP_RESERVATION=1 restores Ray's default.
RESERVATION_ENV = "VLJEPA_DATA_OP_RESERVATION"


def configure_ray_data() -> None:
    """The project's Ray Data settings; datasets capture the context they are created under."""
    context = ray.data.DataContext.get_current()
    context.op_resource_reservation_enabled = os.environ.get(RESERVATION_ENV, "0") == "1"


def init_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Connect (or start a local instance) and apply the Ray Data settings. Call it before
    building any Dataset: Ray Data would otherwise start a local instance of its own."""
    configure_ray_data()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)


def gpus_available() -> int:
    return int(ray.cluster_resources().get("GPU", 0))
