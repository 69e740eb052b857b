"""Model sources: a directory is used as is, without importing MLflow; an immutable MLflow URI is
downloaded once per machine and store; anything else fails clearly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pipelines.models.source import is_mlflow_uri, resolve_model_dir


def test_a_model_directory_resolves_without_importing_mlflow(tmp_path):
    (tmp_path / "vljepa.json").write_text("{}")
    code = ("import sys; from pipelines.models.source import resolve_model_dir; "
            f"print(resolve_model_dir({str(tmp_path)!r})); assert 'mlflow' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path)


def test_uris_and_directories_are_told_apart(tmp_path):
    assert is_mlflow_uri("models:/vljepa/3") and is_mlflow_uri("runs:/abc/model") and is_mlflow_uri("s3://b/m")
    assert not is_mlflow_uri(str(tmp_path)) and not is_mlflow_uri(f"file://{tmp_path}")
    with pytest.raises(ValueError, match="no vljepa.json"):
        resolve_model_dir(str(tmp_path))


def _logged_model_dir(tmp_path, store: str) -> tuple[str, str]:
    """A model directory logged as a run's artifacts in a SQLite MLflow store: (tracking URI, run id)."""
    import mlflow

    model = tmp_path / f"{store}-model"
    model.mkdir()
    (model / "vljepa.json").write_text('{"store": "%s"}' % store)
    uri = f"sqlite:///{tmp_path / store}.db"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment(store, artifact_location=(tmp_path / f"{store}-artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(model), "model")
    return uri, run.info.run_id


def test_an_immutable_uri_is_downloaded_once_per_machine_and_store(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("VLJEPA_HOME", str(tmp_path / "home"))
    try:
        uri_a, run_a = _logged_model_dir(tmp_path, "a")
        first = resolve_model_dir(f"runs:/{run_a}/model")
        assert first.is_relative_to(tmp_path / "home" / "mlflow-models") and (first / "vljepa.json").exists()
        shutil.rmtree(tmp_path / "a-artifacts")  # the store loses it: a second resolve must not need it
        assert resolve_model_dir(f"runs:/{run_a}/model") == first
        # the same URI text in another store is another model
        uri_b, _ = _logged_model_dir(tmp_path, "b")
        mlflow.set_tracking_uri(uri_b)
        with pytest.raises(ValueError, match=f"Run with id={run_a} not found"):
            resolve_model_dir(f"runs:/{run_a}/model")  # no such run there: fetched, not served from a's copy
        assert [p.name.count(".") for p in (tmp_path / "home" / "mlflow-models").iterdir()] == [0]  # no staging left
    finally:
        mlflow.set_tracking_uri(None)


def test_a_registry_block_leaves_the_callers_registry_as_it_was(tmp_path, monkeypatch):
    """resolve_model_dir(..., registry_uri=) points MLflow's registry elsewhere for one download;
    mlflow.set_registry_uri also exports MLFLOW_REGISTRY_URI, which must not outlive the block."""
    import mlflow

    from pipelines.train.tracking import using_registry_uri

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    mlflow.set_registry_uri(None)
    other = f"sqlite:///{tmp_path / 'registry.db'}"
    with using_registry_uri(other):
        assert mlflow.get_registry_uri() == other
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_registry_uri() == mlflow.get_tracking_uri()  # back to MLflow's default

    monkeypatch.setenv("MLFLOW_REGISTRY_URI", other)
    try:
        with using_registry_uri(f"sqlite:///{tmp_path / 'third.db'}"):
            pass
        assert os.environ["MLFLOW_REGISTRY_URI"] == other == mlflow.get_registry_uri()
    finally:
        mlflow.set_registry_uri(None)  # the process-wide setting: later tests start from MLflow's default


def test_a_uri_naming_nothing_is_a_user_error_naming_the_store_asked(tmp_path):
    tracking = f"sqlite:///{tmp_path / 'store.db'}"
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    with pytest.raises(ValueError, match="models:/vljepa-typo/1: Registered Model with name=vljepa-typo not found") as info:
        resolve_model_dir("models:/vljepa-typo/1", tracking, registry)
    assert tracking in str(info.value) and registry in str(info.value)
