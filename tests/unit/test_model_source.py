"""Model sources: a directory is used as is, without importing MLflow; anything else fails clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.model_source import is_mlflow_uri, resolve_model_dir


def test_a_model_directory_resolves_without_importing_mlflow(tmp_path):
    (tmp_path / "vljepa.json").write_text("{}")
    code = ("import sys; from pipelines.model_source import resolve_model_dir; "
            f"print(resolve_model_dir({str(tmp_path)!r})); assert 'mlflow' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path)


def test_uris_and_directories_are_told_apart(tmp_path):
    assert is_mlflow_uri("models:/vljepa/3") and is_mlflow_uri("runs:/abc/model") and is_mlflow_uri("s3://b/m")
    assert not is_mlflow_uri(str(tmp_path)) and not is_mlflow_uri(f"file://{tmp_path}")
    with pytest.raises(ValueError, match="no vljepa.json"):
        resolve_model_dir(str(tmp_path))
