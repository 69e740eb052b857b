"""Register an exported model directory in an MLflow store, as `vljepa train` does: tests that load
models by registry URI (Serve, train-decoder) start from one."""

from __future__ import annotations

import mlflow

from pipelines.train.tracking import log_and_register, using_registry_uri, using_tracking_uri


def registered_uri(model_dir, tracking_uri: str, name: str, registry_uri: str | None = None) -> str:
    """-> models:/NAME/VERSION of `model_dir`, logged in a new run of the store at `tracking_uri` and
    registered there, or in the separate registry at `registry_uri`."""
    with using_tracking_uri(tracking_uri), using_registry_uri(registry_uri or tracking_uri), mlflow.start_run():
        return f"models:/{log_and_register(model_dir, name)}"
