"""The project's Ray Data settings: the per-operator reservation is off unless asked for."""

from __future__ import annotations

import ray.data

from pipelines.cluster.ray_runtime import RESERVATION_ENV, configure_ray_data


def test_reservation_is_off_by_default_and_can_be_restored(monkeypatch):
    context = ray.data.DataContext.get_current()
    saved = context.op_resource_reservation_enabled
    try:
        monkeypatch.delenv(RESERVATION_ENV, raising=False)
        configure_ray_data()
        assert context.op_resource_reservation_enabled is False
        monkeypatch.setenv(RESERVATION_ENV, "1")
        configure_ray_data()
        assert context.op_resource_reservation_enabled is True
    finally:
        context.op_resource_reservation_enabled = saved
