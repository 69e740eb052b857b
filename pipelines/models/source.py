"""Where a model comes from: an exported model directory, or an MLflow model URI
(models:/NAME/VERSION, runs:/RUN_ID/model) downloaded to one.

MLflow is imported only for a URI: serving or evaluating a directory then starts without it
(importing mlflow.pyfunc costs ~1.5 s, and a GPU node's image need not carry MLflow at all).

A URI that names one immutable version (models:/NAME/<number>, runs:/...) is downloaded once per
machine into VLJEPA_HOME/mlflow-models/, keyed by the tracking and registry URIs too: the Serve
replicas on a node (each resolves the URI itself, since a path from another machine means
nothing there) share one copy. Aliases, "latest" and plain artifact URIs are fetched every time."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from model.home import vljepa_home

IMMUTABLE_URI = re.compile(r"(models:/[^/@]+/\d+|runs:/[^/]+)(/.*)?")


def is_mlflow_uri(source: str) -> bool:
    return source.startswith(("models:/", "runs:/", "mlflow-artifacts:/")) or (
        "://" in source and not source.startswith("file://"))


def resolve_model_dir(source: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> Path:
    """A model directory, or an MLflow model URI downloaded to one; `tracking_uri` / `registry_uri`:
    the MLflow tracking server and model registry to resolve it against (default: this process's),
    e.g. the ones a Ray job's driver used. A registry model's version may point into the tracking
    store (MLflow 3 registers logged models, `models:/m-...`), so a separate registry needs both."""
    if not is_mlflow_uri(source):
        path = Path(source.removeprefix("file://"))
        if not (path / "vljepa.json").exists():
            raise ValueError(f"{source} is not an exported VL-JEPA model directory (no vljepa.json)")
        return path
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from pipelines.train.tracking import using_registry_uri, using_tracking_uri

    with (using_tracking_uri(tracking_uri) if tracking_uri else contextlib.nullcontext(),
          using_registry_uri(registry_uri) if registry_uri else contextlib.nullcontext()):
        try:
            if IMMUTABLE_URI.fullmatch(source):
                local = download_once(source)
            else:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            # a user error (a typo, or the wrong MLflow server): say which store was asked
            raise ValueError(f"{source}: {exc.message} (MLflow tracking store {mlflow.get_tracking_uri()}, "
                             f"registry {mlflow.get_registry_uri()})") from exc
    found = sorted(local.rglob("vljepa.json"))
    if not found:
        raise ValueError(f"{source} holds no VL-JEPA model (no vljepa.json among its artifacts)")
    return found[0].parent


class WorkerModel(NamedTuple):
    local_dir: Path  # where this process resolved it
    source: str  # what the workers (Ray Train workers, Serve replicas) get and resolve themselves
    tracking_uri: str | None  # for a URI: this process's MLflow store, to resolve it against
    registry_uri: str | None


def source_for_workers(source: str) -> WorkerModel:
    """A model a driver hands to its Ray workers, resolved here first to fail early. A URI goes as
    is, with this process's MLflow store, and each worker resolves it on its own node (the driver's
    download is not on the others); a directory goes as an absolute path (a relative one would
    name the worker's working directory)."""
    model_dir = resolve_model_dir(source)
    if is_mlflow_uri(source):
        return WorkerModel(model_dir, source, *mlflow_store())
    return WorkerModel(model_dir, str(model_dir.resolve()), None, None)


def local_path_for_workers(source: str | None) -> str | None:
    """A path a driver hands to its Ray workers, absolute when it names something on this machine
    (a worker resolves a relative one in its own working directory); anything else (a hub id, a
    URI) as given."""
    if source is None or is_mlflow_uri(source) or not Path(source).exists():
        return source
    return str(Path(source).resolve())


def mlflow_store() -> tuple[str, str]:
    """(tracking URI, registry URI) of this process, which a driver hands to its Ray workers with an
    MLflow model URI: their nodes' environment may name no MLflow server, or another. The registry
    defaults to the tracking server."""
    import mlflow

    return mlflow.get_tracking_uri(), mlflow.get_registry_uri()


def download_dir(source: str, tracking_uri: str, registry_uri: str) -> Path:
    """Where this machine keeps the download of an immutable URI from that MLflow store."""
    key = hashlib.sha256("|".join((tracking_uri, registry_uri, source)).encode())
    return vljepa_home() / "mlflow-models" / key.hexdigest()[:20]


def download_once(source: str) -> Path:
    """The artifacts of an immutable URI, downloaded on this machine's first call. Downloads go to a
    staging directory renamed into place, so a concurrent reader never sees half a model; when two
    processes race, the second rename fails and its copy is dropped."""
    import mlflow

    final = download_dir(source, mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=final.parent))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging))
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
