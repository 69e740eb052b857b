"""MLflow tracking: a local SQLite store under the run directory unless MLFLOW_TRACKING_URI says
otherwise, one MLflow run per training run (a restart continues it), and model registration."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow

RUN_ID_FILE = "mlflow_run_id.txt"


def tracking_uri_for(run_dir: str, configured: str | None = None) -> str:
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def artifact_location(run_dir: str) -> str:
    return (Path(run_dir).resolve() / "mlartifacts").as_uri()


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow at `uri` for a block, then restore the caller's setting.

    mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; left in place, a second run in the
    same process (a notebook, a test session) would mistake it for the user's choice.
    """
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@contextmanager
def using_registry_uri(uri: str) -> Iterator[None]:
    """Point MLflow's model registry at `uri` for a block, then restore the caller's setting
    (mlflow.set_registry_uri exports MLFLOW_REGISTRY_URI too, and cannot unset it)."""
    previous = os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_registry_uri(previous)
        if previous is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


def start_or_resume_run(run_dir: str, tracking_uri: str, experiment: str, run_name: str) -> str:
    """The MLflow run id of this training run: created once, then reused by every restart.
    Call inside `using_tracking_uri(tracking_uri)`."""
    id_file = Path(run_dir) / RUN_ID_FILE
    if id_file.exists():
        return id_file.read_text().strip()
    existing = mlflow.get_experiment_by_name(experiment)
    experiment_id = existing.experiment_id if existing else mlflow.create_experiment(
        experiment, artifact_location=None if tracking_uri.startswith("http") else artifact_location(run_dir))
    run = mlflow.MlflowClient().create_run(experiment_id, run_name=run_name)
    id_file.parent.mkdir(parents=True, exist_ok=True)
    id_file.write_text(run.info.run_id)
    return run.info.run_id


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat
