"""A logged metric's curve, read back from the MLflow store a training run logged it to."""

from __future__ import annotations

import mlflow


def metric_history(tracking_uri: str, run_id: str, metric: str = "loss") -> list[tuple[int, float]]:
    """[(step, value)] of `metric` in run `run_id`, by step."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
