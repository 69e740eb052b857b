from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from pipelines import serve

CONFIG = Path(__file__).resolve().parents[2] / "infra" / "serve_config.yaml"


def test_serve_config_is_valid_and_names_real_code():
    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    (app,) = config.applications
    module, _, attribute = app.import_path.partition(":")
    assert module == "pipelines.serve" and callable(getattr(serve, attribute))
    names = {d.name for d in app.deployments}
    assert names == {"Ingress", "VisualPredictor", "TextEncoder", "TextDecoder", "RetrievalIndex"}
    by_name = {d.name: d for d in app.deployments}
    assert by_name["RetrievalIndex"].num_replicas == 1  # the index is state
    # a batch can only fill if a replica accepts at least that many requests at once
    assert by_name["VisualPredictor"].max_ongoing_requests >= 16
    assert by_name["TextEncoder"].max_ongoing_requests >= 64
    assert config.http_options.host == "127.0.0.1"
