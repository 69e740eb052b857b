"""Connecting to Ray: a cluster when RAY_ADDRESS (or --address) says so, else a local instance."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import ray
import ray.data

# Ray Data's per-operator resource reservation (on by default) sets aside a share of the cluster
# for every operator's minimum; on a small cluster that caps the CPU decode stage at half the
# cores while the rest sits idle (measured on 2 cores: decode efficiency 0.52-0.65 -> 0.73-0.88,
# feature caching +13%; docs/benchmarks.md). Object-store backpressure still bounds memory without it.
# VLJEPA_DATA_OP_RESERVATION=1 restores Ray's default.
RESERVATION_ENV = "VLJEPA_DATA_OP_RESERVATION"


# Ray Serve's throughput-optimized mode (Ray >= 2.55: gRPC between replicas, the ingress replica
# answering HTTP itself, request-path logs buffered, user code on the replica's own loop) cut the
# CPU of a classify request by a fifth and raised throughput 12-31% here (docs/benchmarks.md).
# Serve reads it once, when ray.serve is imported, in every process: so it must be in the
# environment before that import and before a local instance starts (its processes inherit it).
# A cluster sets it in its own environment (infra/k8s/rayservice.yaml). =0 keeps Ray's default.
SERVE_THROUGHPUT_ENV = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
# In that mode a stopping ingress replica drains for at least 30 s, so that an external load
# balancer in front of the replicas notices; a local instance has none (Serve's proxy is the front
# door), and Ctrl-C on `vljepa serve` took 40 s instead of 9. A cluster keeps Ray's 30 s.
SERVE_DRAIN_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"


# Ray Train starts a detached PlacementGroupCleaner per run that asks the State API every second
# whether the run's controller lives, to free the run's placement group should it die. The State
# API is served by the dashboard, which a local instance here does not start (include_dashboard=
# False: seconds of startup and a process on small machines), so every query failed with a warning:
# 372 lines in one `make demo`. A local instance, placement groups and all, ends with its driver,
# so the cleaner has nothing to free there: its logger is quieted in the workers of local instances
# only. On a cluster (RAY_ADDRESS) the dashboard runs and the cleaner is left as Ray made it.
PLACEMENT_GROUP_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_local_instance_workers() -> None:
    """worker_process_setup_hook of a local instance: runs in each of its worker processes."""
    logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).setLevel(logging.ERROR)


def prefer_serve_throughput_mode() -> bool:
    """Before starting a local instance for serving: the throughput-optimized mode (with a short
    drain) unless the environment already decides. Too late once ray.serve is imported or Ray
    runs (then the environment stands). -> whether this process runs Serve in that mode."""
    if "ray.serve" not in sys.modules and not ray.is_initialized():
        os.environ.setdefault(SERVE_THROUGHPUT_ENV, "1")
        if os.environ[SERVE_THROUGHPUT_ENV] == "1":
            os.environ.setdefault(SERVE_DRAIN_ENV, "2")
    return os.environ.get(SERVE_THROUGHPUT_ENV, "0") == "1"


def configure_ray_data() -> None:
    """The project's Ray Data settings; datasets capture the context they are created under."""
    context = ray.data.DataContext.get_current()
    context.op_resource_reservation_enabled = os.environ.get(RESERVATION_ENV, "0") == "1"


def init_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True,
             metrics_export_port: int | None = None) -> None:
    """Connect (or start a local instance) and apply the Ray Data settings. Call it before
    building any Dataset: Ray Data would otherwise start a local instance of its own.
    metrics_export_port: where a local instance's metrics agent serves Prometheus (None: Ray picks)."""
    configure_ray_data()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver,
                 runtime_env={"worker_process_setup_hook": quiet_local_instance_workers},
                 **({} if metrics_export_port is None else {"_metrics_export_port": metrics_export_port}))
    keep_python_sigterm_handler()


def keep_python_sigterm_handler() -> None:
    """Make SIGTERM reach the driver's Python handler directly, as Ray meant it to (`ray.init` sets
    one: a graceful `sys.exit`, whose atexit hook shuts Ray down).

    Ray's core worker puts abseil's failure-signal handler in front of it: on SIGTERM that handler
    prints a stack trace, then arms a 3-second alarm that aborts the process (SIGABRT, a core dump)
    should the graceful exit take longer, which tearing down a local instance does. So a process
    manager stopping `vljepa serve` while it started, or `ray job stop` on a driver, got a stack
    trace and exit code 134 instead of a clean exit (ray-project/ray#64830). Registering the same
    Python handler again replaces abseil's at the C level; nothing else changes."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (Ray then sets none either)
    handler = signal.getsignal(signal.SIGTERM)
    if handler is not None:  # None: set outside Python, nothing of ours to restore
        signal.signal(signal.SIGTERM, handler)


def gpus_available() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


# Per-stage throughput of a finished Ray Data run, for end-of-run summaries.
#
# Reads Ray Data's own execution stats (a private API): if a Ray upgrade changes them, the summary
# loses this table and nothing else.
def stage_throughput(dataset) -> list[dict]:
    """[{stage, rows, seconds, rows_per_s, task_seconds}] in pipeline order."""
    try:
        stages = []
        for op in _operators_in_order(dataset._get_stats_summary()):
            if op.earliest_start_time is None or op.latest_end_time is None or op.output_num_rows is None:
                continue
            seconds = max(op.latest_end_time - op.earliest_start_time, 1e-9)
            rows = int(op.output_num_rows.sum)
            stages.append({
                "stage": op.operator_name, "rows": rows, "seconds": round(seconds, 2),
                "rows_per_s": round(rows / seconds, 1),
                "task_seconds": round(op.wall_time.sum, 2) if op.wall_time else None,
            })
        return stages
    except Exception as exc:  # stats are a nicety; never fail a run over them
        logging.getLogger(__name__).debug("no Ray Data stage stats: %s", exc)
        return []


def _operators_in_order(summary) -> list:
    """Operators of this dataset and of the datasets it was built from, first stage first."""
    operators = []
    for parent in summary.parents:
        operators.extend(_operators_in_order(parent))
    return operators + list(summary.operators_stats)
