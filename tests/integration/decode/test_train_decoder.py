"""`vljepa train-decoder` on a real Ray instance: text-only training, CIDEr evaluation, MLflow,
export and registration, a fine-tune on predicted embeddings, and `vljepa export --run`."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from model.y_decoder_export import decoder_dir_of
from pipelines.decode import train_decoder
from pipelines.decode.caption import load_captioner
from pipelines.models import export
from tests.integration.mlflow_history import metric_history
from tests.integration.mlflow_registry import registered_uri


def _run(capsys, args) -> dict:
    assert train_decoder.main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_decoder_then_fine_tune_on_predictions(caches, tmp_path, capsys, monkeypatch):
    model = tmp_path / "vljepa"
    assert export.main(["--preset", "minilm", "--out", str(model)]) == 0
    text_run = tmp_path / "text"
    summary = _run(capsys, ["--model", str(model), "--cache", str(caches / "train"), "--out", str(text_run),
                            "--steps", "60", "--batch-size", "16", "--checkpoint-every", "30", "--lr", "3e-3", "--noise-norm", "0.1",
                            "--eval-cache", str(caches / "eval")])
    metrics = summary["metrics"]
    assert metrics["step"] == 60
    # the decoder reads true S_Y far better than random directions after a short run
    assert metrics["eval.cider_true"] > metrics["eval.cider_random"]
    exported = text_run / "model"
    assert decoder_dir_of(exported) == exported / "y_decoder" and (exported / "vljepa.json").exists()
    assert load_captioner(str(exported)).decoder.config.noise_norm == 0.1

    mlflow.set_tracking_uri(summary["tracking_uri"])
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.data.params["mode"] == "text" and "eval.cider_predicted" in run.data.metrics
    assert summary["registered_model"] == "vljepa-captioner/1"
    assert Path(summary["curves"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mlflow.set_tracking_uri(None)

    # The fine-tune names the VL-JEPA model by a registry URI, in a registry separate from the
    # tracking store that holds the logged model. The Ray workers started before these variables
    # were set: they resolve the URI against the server and registry the driver recorded.
    store, registry = (f"sqlite:///{tmp_path / name}" for name in ("store.db", "registry.db"))
    source = registered_uri(model, store, "vljepa-source", registry_uri=registry)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry)
    tuned_run = tmp_path / "tuned"
    tuned = _run(capsys, ["--model", source, "--cache", str(caches / "train"), "--out", str(tuned_run),
                          "--mode", "predicted", "--text-mix", "0.5", "--init-decoder", str(exported), "--steps", "10",
                          "--batch-size", "8", "--registered-model", ""])
    assert tuned["metrics"]["step"] == 10 and tuned["registered_model"] is None
    again = tmp_path / "again"
    assert export.main(["--run", str(tuned_run), "--out", str(again)]) == 0
    metadata = json.loads((again / "y_decoder" / "y_decoder.json").read_text())["metadata"]
    assert metadata["mode"] == "predicted" and metadata["text_mix"] == 0.5 and metadata["model"] == source


def _losses(summary) -> list[tuple[int, float]]:
    return metric_history(summary["tracking_uri"], summary["mlflow_run_id"])


def test_a_resumed_fine_tune_continues_the_loss_curve_of_one_never_stopped(captioning_model_dir, caches, tmp_path,
                                                                          capsys):
    """A fine-tune on Ŝ_Y that mixes in S_Y draws each row's source from torch's generator: 4 steps,
    then --resume to 8, gives exactly the curve of 8 steps never stopped only when the optimizer, the
    generator and the data position all come back. The warmup outlasts the run, so the lr of a step
    does not depend on --steps (the cosine after it would)."""
    common = ["--model", str(captioning_model_dir), "--cache", str(caches / "train"), "--mode", "predicted",
              "--text-mix", "0.5", "--batch-size", "8", "--warmup-steps", "100", "--log-every", "1",
              "--registered-model", ""]
    run = tmp_path / "run"
    first = _run(capsys, [*common, "--out", str(run), "--steps", "4", "--checkpoint-every", "2"])
    resumed = _run(capsys, [*common, "--out", str(run), "--steps", "8", "--checkpoint-every", "2", "--resume"])
    assert resumed["mlflow_run_id"] == first["mlflow_run_id"] and resumed["metrics"]["step"] == 8
    whole = _run(capsys, [*common, "--out", str(tmp_path / "whole"), "--steps", "8", "--checkpoint-every", "8"])
    assert [step for step, _ in _losses(resumed)] == list(range(1, 9))
    assert _losses(resumed) == _losses(whole)
