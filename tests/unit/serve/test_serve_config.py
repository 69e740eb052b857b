from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from pipelines.serve import app as serve
from pipelines.serve.args import ServeAppArgs

CONFIG = Path(__file__).resolve().parents[3] / "infra" / "serve_config.yaml"


def test_serve_config_is_valid_and_names_real_code():
    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    (app,) = config.applications
    module, _, attribute = app.import_path.partition(":")
    assert module == "pipelines.serve.app" and callable(getattr(serve, attribute))
    names = {d.name for d in app.deployments}
    assert names == {"Ingress", "VisualPredictor", "TextEncoder", "TextDecoder", "RetrievalIndex"}
    by_name = {d.name: d for d in app.deployments}
    # a batch can only fill if a replica accepts at least that many requests at once
    assert by_name["VisualPredictor"].max_ongoing_requests >= 16
    assert by_name["TextEncoder"].max_ongoing_requests >= 64
    assert config.http_options.host == "127.0.0.1"


def test_the_configs_args_are_ones_the_builder_takes():
    (app,) = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text())).applications
    args = ServeAppArgs.model_validate(app.args)  # a key build_app does not know fails here
    assert args.model == "models:/vljepa-captioner/1"
    assert args.num_gpus > 0 and args.decoder_num_gpus > 0
    assert args.index.startswith("s3://") and args.index_replicas > 1  # read replicas share one table


def test_serve_validates_the_builders_args_before_building(captioning_model_dir):
    # what `serve run` / `serve deploy` call with a config's `args:` or `serve run ... key=value`
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    built = call_user_app_builder_with_args_if_necessary(
        serve.build_app, {"model": str(captioning_model_dir), "max_request_mb": "2", "max_batch_size": "4"})
    ingress = built._bound_deployment
    settings, visual = ingress.init_args[3], ingress.init_args[0]._bound_deployment
    assert settings.max_request_bytes == 2 * 2**20  # "2" from the command line, converted
    assert visual.init_args[1] == 4

    with pytest.raises(ValidationError, match="max_requets_mb"):  # a misspelt key is not ignored
        call_user_app_builder_with_args_if_necessary(
            serve.build_app, {"model": str(captioning_model_dir), "max_requets_mb": 2})
    with pytest.raises(ValidationError, match="max_batch_size"):
        call_user_app_builder_with_args_if_necessary(
            serve.build_app, {"model": str(captioning_model_dir), "max_batch_size": 0})
    with pytest.raises(ValidationError, match="model"):
        call_user_app_builder_with_args_if_necessary(serve.build_app, {"max_request_mb": 2})


def test_a_local_instance_gives_each_model_replica_a_share_of_a_small_machine(captioning_model_dir, tmp_path,
                                                                            monkeypatch):
    """Three model replicas (visual, text, decoder) at 1 CPU each never all start on 2 CPUs. Shares
    are floored: three of 0.67 would ask Ray for more than 2 CPUs."""
    import shutil

    import ray

    from pipelines.serve.app import local_replica_cpus

    plain = shutil.copytree(captioning_model_dir, tmp_path / "plain", ignore=shutil.ignore_patterns("y_decoder"))
    for cpus, with_decoder, without in [(2, 0.66, 1.0), (1, 0.33, 0.5), (8, 1.0, 1.0)]:
        monkeypatch.setattr(ray, "cluster_resources", lambda cpus=cpus: {"CPU": float(cpus)})
        assert local_replica_cpus(captioning_model_dir) == with_decoder and 3 * with_decoder <= cpus
        assert local_replica_cpus(plain) == without


def test_the_index_settings_reach_the_index_replicas(captioning_model_dir, tmp_path):
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from ops.retrieval.table import model_fingerprint
    from pipelines.retrieval.deployment import IndexSettings
    from tests.retrieval_tables import write_table

    write_table(str(tmp_path), np.eye(384, dtype=np.float32)[:4], fingerprint=model_fingerprint(captioning_model_dir))
    built = call_user_app_builder_with_args_if_necessary(serve.build_app, {
        "model": str(captioning_model_dir), "index": str(tmp_path), "index_replicas": "3", "index_probe": "8",
        "index_refine": "0"})
    index = built._bound_deployment.init_args[2]._bound_deployment
    assert index.name == "RetrievalIndex" and index._deployment_config.num_replicas == 3
    assert index.init_args == (str(tmp_path), model_fingerprint(captioning_model_dir),
                               IndexSettings(probe=8, refine=0, refresh_s=0.0))
    plain = call_user_app_builder_with_args_if_necessary(serve.build_app, {"model": str(captioning_model_dir)})
    assert plain._bound_deployment.init_args[2] is None  # no index: no RetrievalIndex deployment
    with pytest.raises(ValidationError, match="index_probe"):
        call_user_app_builder_with_args_if_necessary(
            serve.build_app, {"model": str(captioning_model_dir), "index": str(tmp_path), "index_probe": 0})
    with pytest.raises(ValueError, match="no retrieval index at"):  # found by the builder, not by each replica
        call_user_app_builder_with_args_if_necessary(
            serve.build_app, {"model": str(captioning_model_dir), "index": str(tmp_path / "typo")})
