"""MLflow tracking: a local SQLite store under the run directory unless MLFLOW_TRACKING_URI says
otherwise, one MLflow run per training run (a restart continues it), and model registration."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import mlflow.pyfunc

RUN_ID_FILE = "mlflow_run_id.txt"


def tracking_uri_for(run_dir: str, configured: str | None = None) -> str:
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def artifact_location(run_dir: str) -> str:
    return (Path(run_dir).resolve() / "mlartifacts").as_uri()


@contextmanager
def _using_uri(set_uri, variable: str, uri: str) -> Iterator[None]:
    """set_uri(uri) for a block, then the caller's setting back. MLflow's setters also export
    `variable`; left in place, a second run in the same process (a notebook, a test session) would
    mistake it for the user's choice. set_registry_uri cannot unset it, hence the pop."""
    previous = os.environ.get(variable)
    set_uri(uri)
    try:
        yield
    finally:
        set_uri(previous)
        if previous is None:
            os.environ.pop(variable, None)


def using_tracking_uri(uri: str):
    """Point MLflow's tracking at `uri` for a block."""
    return _using_uri(mlflow.set_tracking_uri, "MLFLOW_TRACKING_URI", uri)


def using_registry_uri(uri: str):
    """Point MLflow's model registry at `uri` for a block."""
    return _using_uri(mlflow.set_registry_uri, "MLFLOW_REGISTRY_URI", uri)


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


# The exported model as an MLflow model: logged with the run, registered, and resolvable back to
# a model directory from `models:/NAME/VERSION` or `runs:/RUN_ID/model` URIs
# (pipelines.models.source.resolve_model_dir, which imports MLflow only for a URI).
ARTIFACT_KEY = "vljepa_model"
PYFUNC_CODE = Path(__file__).with_name("mlflow_pyfunc_code.py")  # sets VLJepaPyfunc as the model


class VLJepaPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc flavour: texts in, shared-space embeddings out (the y-encoder side).
    The full model (visual side too) is in the artifacts, loaded with `model.export.load_model`."""

    def load_context(self, context):
        from model.export import load_model

        self.model = load_model(context.artifacts[ARTIFACT_KEY]).eval()

    # The type hints are MLflow's input schema: it infers the model's signature from them and hands
    # predict a list of strings whether the caller passes a list or a one-column DataFrame.
    def predict(self, context, model_input: list[str], params=None) -> list[list[float]]:
        return self.model.embed_texts(list(model_input)).numpy()  # (len(texts), embed_dim) float32


EXPORTED_ALIAS = "champion"  # the registered version a run exported last: models:/NAME@champion


def log_and_register(model_dir: Path, registered_name: str | None) -> str | None:
    """Log the model into the active run; register it when a name is given, and point the name's
    `champion` alias at the new version (serve models:/NAME@champion to follow it). Returns
    'NAME/VERSION'."""
    info = mlflow.pyfunc.log_model(
        name="model", python_model=str(PYFUNC_CODE), artifacts={ARTIFACT_KEY: str(model_dir)},
        pip_requirements=["vl-jepa"],  # the project itself (pins live in its pyproject / constraints)
    )
    if not registered_name:
        return None
    version = mlflow.register_model(info.model_uri, registered_name)
    mlflow.MlflowClient().set_registered_model_alias(registered_name, EXPORTED_ALIAS, version.version)
    return f"{registered_name}/{version.version}"


def log_cache_inputs(caches_by_context: dict[str, list[str]]) -> None:
    """Each feature cache a run reads as an MLflow dataset input of the active run, under the
    context it is read in (training, replay, evaluation): its name (the cache's directory), its URI,
    the fingerprint of its features as the digest, and its rows as a tag."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    from ops.cache.feature_cache import FeatureCache

    for context, urls in caches_by_context.items():
        for url in urls:
            manifest = FeatureCache(url).manifest() or {}
            rows = sum(shard.get("rows", 0) for shard in manifest.get("shards", {}).values())
            with warnings.catch_warnings():  # MLflow registers its local source twice and warns of the tie
                warnings.simplefilter("ignore", UserWarning)
                source = resolve_dataset_source(url)
            dataset = MetaDataset(source=source, name=url.rstrip("/").rsplit("/", 1)[-1],
                                  digest=manifest.get("fingerprint"))
            mlflow.log_input(dataset, context=context, tags={"rows": str(rows)})


CURVES = ("loss", "lr")  # each in a panel of its own; the eval.* metrics share the last one


def plot_curves(out: Path, run_id: str, verb: str) -> Path:
    """OUT/curves.png: loss, lr and the evaluation metrics against step, from the MLflow run's
    history (a resumed run's whole curve), logged to the run as an artifact. Call inside the run."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node
    import matplotlib.pyplot as plt

    client = mlflow.MlflowClient()
    names = sorted(mlflow.get_run(run_id).data.metrics)
    # eval.TASK.METRIC scores, not per category, nor the counts and chance levels logged beside them
    evaluated = [n for n in names if n.startswith("eval.") and n.count(".") == 2
                 and not n.rsplit(".", 1)[1].startswith(("num_", "chance"))]
    panels = [[name] for name in CURVES if name in names] + ([evaluated] if evaluated else [])
    figure, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True, squeeze=False)
    for axis, panel in zip(axes[:, 0], panels):
        for name in panel:
            history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
            axis.plot(*zip(*history), marker="o" if len(history) < 20 else None, label=name.removeprefix("eval."))
        axis.set_ylabel(panel[0] if len(panel) == 1 else "evaluation")
        if len(panel) > 1:
            axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    figure.suptitle(f"{verb}: {out.name}")
    figure.tight_layout()
    path = out / "curves.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    mlflow.log_artifact(str(path))
    return path
