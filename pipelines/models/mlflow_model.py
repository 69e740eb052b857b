"""The exported model as an MLflow model: logged with the run, registered, and resolvable back to
a model directory from `models:/NAME/VERSION` or `runs:/RUN_ID/model` URIs
(pipelines.models.source.resolve_model_dir, which imports MLflow only for a URI)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.pyfunc

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


def log_and_register(model_dir: Path, registered_name: str | None) -> str | None:
    """Log the model into the active run; register it when a name is given. Returns 'NAME/VERSION'."""
    info = mlflow.pyfunc.log_model(
        name="model", python_model=str(PYFUNC_CODE), artifacts={ARTIFACT_KEY: str(model_dir)},
        pip_requirements=["vl-jepa"],  # the project itself (pins live in its pyproject / constraints)
    )
    if not registered_name:
        return None
    version = mlflow.register_model(info.model_uri, registered_name)
    return f"{registered_name}/{version.version}"
