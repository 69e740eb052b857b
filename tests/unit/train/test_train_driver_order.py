"""`fit` connects to Ray (the --address given, with the project's Ray Data settings) before it
builds the datasets: built first, Ray Data would start a local instance of its own."""

from __future__ import annotations

import pytest

import pipelines.cluster.ray_runtime as ray_runtime
from pipelines.train.config import TrainConfig
from pipelines.train.driver import fit


class Stop(Exception):
    pass


def test_datasets_are_built_after_connecting(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(ray_runtime, "init_ray", lambda address=None, **_: calls.append(("init_ray", address)))

    def build_datasets():
        calls.append(("build", None))
        raise Stop  # nothing past this point is under test

    config = TrainConfig(stage="pretrain-video", cache=str(tmp_path), out=str(tmp_path / "run"))
    with pytest.raises(Stop):
        fit(lambda _: None, config, build_datasets, "ray://head:10001")
    assert calls == [("init_ray", "ray://head:10001"), ("build", None)]
