"""The Serve graph hands its replicas the model's source, never the builder's local copy of it: on a
cluster the replicas run on other nodes, where that copy does not exist. (The real download, by
the builder and each replica, is exercised in tests/integration/serve/test_serve.py.)"""

from __future__ import annotations

from pipelines.models import source as model_source
from pipelines.serve import app as serve
from pipelines.serve.args import ServeAppArgs


def _model_replicas(app) -> dict:
    ingress = app._bound_deployment  # Serve's Application wraps the bound ingress deployment
    bound = {"Ingress": ingress}
    bound.update({arg._bound_deployment.name: arg._bound_deployment for arg in ingress.init_args
                  if hasattr(arg, "_bound_deployment")})
    return bound


def test_replicas_get_the_uri_and_the_builders_registry(captioning_model_dir, monkeypatch):
    fetched = []
    monkeypatch.setattr(model_source, "resolve_model_dir", lambda source: fetched.append(source) or captioning_model_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    replicas = _model_replicas(serve.build_app(ServeAppArgs(model="models:/vljepa-captioner/3")))

    assert fetched == ["models:/vljepa-captioner/3"]  # the builder looked once (decoder or not)
    assert set(replicas) == {"Ingress", "VisualPredictor", "TextEncoder", "TextDecoder"}
    for name in ("VisualPredictor", "TextEncoder", "TextDecoder"):
        assert replicas[name].init_args[0] == "models:/vljepa-captioner/3", name
    assert replicas["Ingress"].init_args[3].model == "models:/vljepa-captioner/3"  # ServeSettings
    for name in ("Ingress", "VisualPredictor", "TextEncoder", "TextDecoder"):
        env = replicas[name].ray_actor_options["runtime_env"]["env_vars"]
        assert env == {"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000"}, name


def test_a_directory_source_adds_no_runtime_env(captioning_model_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    replicas = _model_replicas(serve.build_app(ServeAppArgs(model=str(captioning_model_dir))))
    assert replicas["VisualPredictor"].init_args[0] == str(captioning_model_dir)
    assert all("runtime_env" not in r.ray_actor_options for r in replicas.values())
