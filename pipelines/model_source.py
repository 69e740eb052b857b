"""Where a model comes from: an exported model directory, or an MLflow model URI
(models:/NAME/VERSION, runs:/RUN_ID/model) downloaded to one.

MLflow is imported only for a URI: serving or evaluating a directory then starts without it
(importing mlflow.pyfunc costs ~1.5 s, and a GPU node's image need not carry MLflow at all)."""

from __future__ import annotations

from pathlib import Path


def is_mlflow_uri(source: str) -> bool:
    return source.startswith(("models:/", "runs:/", "mlflow-artifacts:/")) or (
        "://" in source and not source.startswith("file://"))


def resolve_model_dir(source: str) -> Path:
    """A model directory, or an MLflow model URI downloaded to one."""
    if not is_mlflow_uri(source):
        path = Path(source.removeprefix("file://"))
        if not (path / "vljepa.json").exists():
            raise ValueError(f"{source} is not an exported VL-JEPA model directory (no vljepa.json)")
        return path
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source))
    found = sorted(local.rglob("vljepa.json"))
    if not found:
        raise ValueError(f"{source} holds no VL-JEPA model (no vljepa.json among its artifacts)")
    return found[0].parent
