"""Real services for integration tests: one S3 endpoint (moto's server) and one Ray instance per
session. The S3 variables are set before Ray starts so that every Ray worker inherits them."""

from __future__ import annotations

import os

import pytest

from pipelines.cluster.net import free_loopback_port, local_s3_server

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)



@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 for the whole session."""
    with local_s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def metrics_port():
    """Where the test instance's metrics agent serves Prometheus (pipelines/cluster/exported_metrics.py reads it)."""
    return free_loopback_port()


@pytest.fixture(scope="session")
def ray_instance(s3_endpoint, metrics_port, tmp_path_factory):
    import ray

    os.environ["VLJEPA_HOME"] = str(tmp_path_factory.mktemp("vljepa-home"))
    # workers push metrics every second instead of every 10, so a test reads them within seconds
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _metrics_export_port=metrics_port,
             _system_config={"metrics_report_interval_ms": 1000})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_data(ray_instance, tmp_path_factory):
    """A small sample dataset (real H.264 / JPEG / PNG shards), written once."""
    from ops.data.sample_data import SampleDataConfig, write_split

    root = tmp_path_factory.mktemp("sample-data")
    config = SampleDataConfig(clips_per_scene=1, images_per_scene=1, vqa_per_scene=1, samples_per_shard=24)
    write_split(str(root), "train", config)
    return root


@pytest.fixture(scope="session")
def caches(sample_data, tmp_path_factory):
    """Feature caches of the small sample data: train, and the held-out eval split."""
    from ops.data.sample_data import SampleDataConfig, write_split
    from pipelines.cache import cache_features

    root = tmp_path_factory.mktemp("caches")
    write_split(str(sample_data), "eval", SampleDataConfig(eval_clips_per_scene=1, samples_per_shard=24))
    for split in ("train", "eval"):
        assert cache_features.main(["--shards", str(sample_data / split), "--out", str(root / split),
                                    "--preset", "tiny"]) == 0
    return root
