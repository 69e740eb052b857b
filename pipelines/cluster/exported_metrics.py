"""Reading what a Ray node's metrics agent exports, as Prometheus scrapes it: the demo's summary of
the application's metrics (pipelines/serve/metrics.py), and the tests that check them."""

from __future__ import annotations

import time
from collections.abc import Callable

import ray
import requests
from prometheus_client.parser import text_string_to_metric_families

# Ray's workers push their metrics to their node's agent every metrics_report_interval_ms (10 s by
# default), so a value recorded now is exported within that, plus the agent's own pass
EXPORT_WAIT_S = 30.0

Sample = tuple[str, dict[str, str], float]


def local_metrics_port() -> int:
    """The metrics export port of the (first) node of the Ray instance this process is connected to."""
    return int(ray.nodes()[0]["MetricsExportPort"])


def scrape(port: int, host: str = "127.0.0.1") -> list[Sample]:
    """(name, labels, value) of every sample the agent exports now."""
    text = requests.get(f"http://{host}:{port}/metrics", timeout=10).text
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def summed(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none is exported)."""
    return sum(value for sample_name, sample_labels, value in samples
               if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()))


def settled(port: int, prefix: str, quiet_s: float = 3.0, timeout_s: float = EXPORT_WAIT_S) -> list[Sample]:
    """The agent's samples once those named `prefix`... have not changed for quiet_s (or timeout_s
    passed): values recorded before now have all been pushed, so a count read next is a baseline
    later changes can be told from."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while True:
        samples = scrape(port)
        mine = sorted((name, sorted(labels.items()), value) for name, labels, value in samples if name.startswith(prefix))
        if mine != last:
            last, since = mine, time.monotonic()
        elif time.monotonic() - since >= quiet_s or time.monotonic() > deadline:
            return samples
        time.sleep(0.5)


def exported(port: int, name: str, **labels: str) -> float:
    """summed() over what the agent on 127.0.0.1:port exports now."""
    return summed(scrape(port), name, **labels)


def wait_for(port: int, name: str, reached: Callable[[float], bool], timeout_s: float = EXPORT_WAIT_S,
             **labels: str) -> float:
    """Scrapes until `reached(summed(...))` or timeout_s pass -> the last value read."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = exported(port, name, **labels)
        if reached(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)
