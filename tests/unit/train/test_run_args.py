"""`vljepa train` and `vljepa train-decoder` take the same data, placement, checkpoint and recovery
options (pipelines/train/run_args.py) and carry them into their configs alike. Before, train-decoder's
config had placement_strategy, threads_per_worker and epochs_per_pass that no option could set."""

from __future__ import annotations

import pytest

from pipelines.decode import train_decoder
from pipelines.train import train

SHARED = ["--epochs-per-pass", "3", "--workers", "4", "--cpus-per-worker", "2", "--threads-per-worker", "5",
          "--checkpoint-every", "7", "--log-every", "2", "--max-failures", "0", "--max-preemptions", "5",
          "--preemption-check-s", "0.5", "--storage", "s3://bucket/ckpt",
          "--placement-strategy", "SPREAD", "--resume", "--address", "ray://head:10001"]
FIELDS = {"epochs_per_pass": 3, "workers": 4, "cpus_per_worker": 2.0, "threads_per_worker": 5, "checkpoint_every": 7,
          "log_every": 2, "max_failures": 0, "max_preemptions": 5, "preemption_check_s": 0.5, "storage": "s3://bucket/ckpt",
          "placement_strategy": "SPREAD"}


def _parse(verb: str, model_dir, extra: list[str]):
    if verb == "train":
        return train.parse_args(["--stage", "sft", "--cache", "c", "--out", "run", "--batch-size", "8", *extra])
    return train_decoder.parse_args(["--model", str(model_dir), "--cache", "c", "--out", "run", *extra])


@pytest.mark.parametrize("verb", ["train", "train-decoder"])
def test_both_verbs_set_the_same_run_fields(verb, captioning_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, options = _parse(verb, captioning_model_dir, SHARED)
    assert {name: getattr(config, name) for name in FIELDS} == FIELDS
    assert options.resume and options.address == "ray://head:10001"


@pytest.mark.parametrize("verb, checkpoint_every", [("train", 50), ("train-decoder", 100)])
def test_defaults_are_each_verbs_own(verb, checkpoint_every, captioning_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, options = _parse(verb, captioning_model_dir, [])
    assert (config.checkpoint_every, config.log_every, config.workers, config.placement_strategy) == (
        checkpoint_every, 10, 1, "PACK")
    # preemptions recovered from without limit (Ray Train's default), a notice looked for every 2 s
    assert (config.max_preemptions, config.preemption_check_s) == (-1, 2.0)
    assert not options.resume and options.address is None


@pytest.mark.parametrize("verb", ["train", "train-decoder"])
def test_an_unknown_placement_strategy_is_refused(verb, captioning_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        _parse(verb, captioning_model_dir, ["--placement-strategy", "ANYWHERE"])
    assert "invalid choice: 'ANYWHERE'" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["train", "train-decoder"])
@pytest.mark.parametrize("option, value, message", [("--max-preemptions", "-2", "must be >= -1, got -2"),
                                                    ("--preemption-check-s", "-1", "must be >= 0, got -1.0")])
def test_preemption_settings_out_of_range_are_refused(verb, option, value, message, captioning_model_dir, tmp_path,
                                                      monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        _parse(verb, captioning_model_dir, [option, value])
    assert message in capsys.readouterr().err
