"""`--resume` continues a run with the settings it was started with: it may run longer or on other
resources, but a setting that changes what it trains (seed, batch size, preset, caches, storage, ...)
is refused before anything is written, each named with its two values. Before, a resume took any
settings silently while MLflow kept the first ones as params."""

from __future__ import annotations

import dataclasses
import json

import mlflow
import pytest

from pipelines.decode.config import DecoderTrainConfig
from pipelines.train.config import TrainConfig
from pipelines.train.driver import open_tracking
from pipelines.train.resume import changed_settings


@pytest.fixture
def started(tmp_path, monkeypatch):
    """A run directory opened once, as `vljepa train` opens it (MLflow on SQLite in the run)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = TrainConfig(stage="sft", cache=[str(tmp_path / "cache")], out=str(tmp_path / "run"), steps=4,
                         batch_size=8, seed=0)
    open_tracking(config, run_name="first", resume=False)
    return config


def _again(config: TrainConfig, **changes) -> TrainConfig:
    return dataclasses.replace(config, tracking_uri=None, mlflow_run_id=None, **changes)


def test_a_resume_that_changes_what_the_run_trains_is_refused_and_writes_nothing(started, tmp_path):
    recorded = (tmp_path / "run" / "train_config.json").read_text()
    with pytest.raises(SystemExit) as refusal:
        open_tracking(_again(started, seed=1, batch_size=16, steps=8), run_name="again", resume=True)
    message = str(refusal.value)
    assert "--batch-size 8 (now 16)" in message and "--seed 0 (now 1)" in message
    assert "--steps 4" not in message  # steps may change: not among the refused
    assert (tmp_path / "run" / "train_config.json").read_text() == recorded


def test_a_resume_may_run_longer_on_other_resources(started, tmp_path, capsys):
    first_run_id = started.mlflow_run_id
    again = _again(started, steps=8, workers=2, checkpoint_every=10, max_preemptions=3)
    open_tracking(again, run_name="again", resume=True)
    printed = capsys.readouterr().out
    assert "--steps 4 (now 8)" in printed and "--workers 1 (now 2)" in printed
    assert again.mlflow_run_id == first_run_id
    # MLflow's params stay the first values (write-once); tags hold what the run now goes on with
    run = mlflow.MlflowClient(tracking_uri=again.tracking_uri).get_run(first_run_id).data
    assert run.params["steps"] == "4" and run.params["workers"] == "1"
    assert {k: v for k, v in run.tags.items() if k.startswith("resumed.")} == {
        "resumed.steps": "8", "resumed.workers": "2", "resumed.checkpoint_every": "10", "resumed.max_preemptions": "3"}
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["steps"] == 8


def test_a_decoder_cannot_resume_a_main_run(started, tmp_path):
    decoder = DecoderTrainConfig(model=str(tmp_path / "model"), cache=started.cache, out=started.out)
    with pytest.raises(SystemExit, match="holds a vljepa run: `vljepa train --resume` continues it"):
        open_tracking(decoder, run_name="decoder", resume=True)


def test_where_the_run_lives_and_settings_of_other_versions_are_not_compared():
    recorded = {"out": "/old/place/run", "tracking_uri": "sqlite:////old/place/run/mlflow.db", "seed": 0,
                "retired_option": 3}
    now = {"out": "/new/place/run", "tracking_uri": None, "seed": 0, "new_option": 1}
    assert changed_settings(recorded, now) == ([], [])
    assert changed_settings({"storage": None}, {"storage": "s3://b/p"}) == (["--storage None (now 's3://b/p')"], [])
