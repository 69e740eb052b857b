"""Register an exported model directory in an MLflow store, as `vljepa train` does: tests that load
models by registry URI (Serve, train-decoder) start from one."""

from __future__ import annotations

import mlflow

from pipelines.mlflow_model import log_and_register
from pipelines.tracking import using_tracking_uri


def registered_uri(model_dir, tracking_uri: str, name: str) -> str:
    """-> models:/NAME/VERSION of `model_dir`, logged in a new run of the store at `tracking_uri`."""
    with using_tracking_uri(tracking_uri), mlflow.start_run():
        return f"models:/{log_and_register(model_dir, name)}"
