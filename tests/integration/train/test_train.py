"""vljepa train / evaluate / export on a real Ray instance, with MLflow on SQLite."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
import warnings
from collections import Counter

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch

from model.export import load_model
from ops.data.sample_data import sample_triplets
from ops.evaluate.text_triplets import triplet_accuracy, write_triplets
from pipelines.evaluate import evaluate
from pipelines.models import export
from pipelines.models.source import resolve_model_dir
from pipelines.train import train
from tests.integration.mlflow_history import metric_history
from tests.integration.mlflow_registry import registered_uri

TRAIN = ["--stage", "sft", "--preset", "tiny", "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "2",
         "--log-every", "1", "--registered-model", ""]


def _train(capsys, caches, out, *extra) -> dict:
    assert train.main([*TRAIN, "--cache", str(caches / "train"), "--out", str(out), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _history(run_dir, metric="loss") -> list[tuple[int, float]]:
    run_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    return metric_history(f"sqlite:///{run_dir / 'mlflow.db'}", run_id, metric)


def test_train_tracks_evaluates_exports_and_registers(ray_instance, caches, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    triplets = sample_triplets()[:24]
    write_triplets(str(tmp_path / "triplets.jsonl"), triplets)
    summary = _train(capsys, caches, run, "--steps", "6", "--checkpoint-every", "3",
                     "--eval-cache", str(caches / "eval"), "--registered-model", "vljepa-test",
                     "--eval-text-triplets", str(tmp_path / "triplets.jsonl"), "--eval-every", "3")
    assert summary["registered_model"] == "vljepa-test/1"
    # the curves: a PNG in the run directory, also the MLflow run's artifact
    assert summary["curves"] == str(run / "curves.png") and (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["tracking_uri"] == f"sqlite:///{run / 'mlflow.db'}"

    client = mlflow.MlflowClient(tracking_uri=summary["tracking_uri"])
    logged = client.get_run(summary["mlflow_run_id"]).data
    assert "curves.png" in {a.path for a in client.list_artifacts(summary["mlflow_run_id"])}
    assert logged.params["stage"] == "sft" and logged.params["batch_size"] == "8"
    assert [step for step, _ in _history(run)] == [1, 2, 3, 4, 5, 6]
    assert {"lr", "temperature", "samples_per_s", "eval.classification.top1", "eval.vqa.accuracy"} <= set(logged.metrics)
    # the y-encoder's hard negatives at each evaluation, the last equal to the exported model's score
    assert [step for step, _ in _history(run, "eval.text_triplets.accuracy")] == [3, 6]
    assert {"eval.text_triplets.by_category.colour.accuracy", "eval.text_triplets.by_category.shape.accuracy"} <= set(logged.metrics)
    # the caches it read, as MLflow dataset inputs: name, URI, the features' fingerprint, rows
    run_inputs = client.get_run(summary["mlflow_run_id"]).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i for i in run_inputs}
    assert set(by_context) == {"training", "evaluation"}
    for context, name in (("training", "train"), ("evaluation", "eval")):
        manifest = json.loads((caches / name / "manifest.json").read_text())
        dataset, tags = by_context[context].dataset, {t.key: t.value for t in by_context[context].tags}
        assert (dataset.name, dataset.digest) == (name, manifest["fingerprint"]) and str(caches / name) in dataset.source
        assert int(tags["rows"]) == sum(shard["rows"] for shard in manifest["shards"].values())

    # the exported directory, the registry and `export --run` all give the same model
    exported = load_model(run / "model")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", summary["tracking_uri"])
    registered = load_model(resolve_model_dir("models:/vljepa-test/1"))
    assert int(client.get_model_version_by_alias("vljepa-test", "champion").version) == 1
    champion = load_model(resolve_model_dir("models:/vljepa-test@champion"))
    assert export.main(["--run", str(run), "--out", str(tmp_path / "again")]) == 0
    again = load_model(tmp_path / "again")
    final = triplet_accuracy(exported.eval().embed_texts, triplets)["accuracy"]
    assert logged.metrics["eval.text_triplets.accuracy"] == pytest.approx(final, abs=1 / 24 + 1e-6)
    texts = ["a red ball moves left", "a blue cube"]
    for other in (registered, champion, again):
        torch.testing.assert_close(other.embed_texts(texts), exported.embed_texts(texts))
    # the pyfunc flavour: texts (a list, or a DataFrame's one column) -> the same embeddings
    pyfunc = mlflow.pyfunc.load_model("models:/vljepa-test/1")
    assert pyfunc.metadata.signature is not None
    # logged as code MLflow runs at load, not as a pickled object
    assert pyfunc.metadata.flavors["python_function"].get("model_code_path", "").endswith("mlflow_pyfunc_code.py")
    assert "python_model" not in pyfunc.metadata.flavors["python_function"]
    for request in (texts, pd.DataFrame({"text": texts})):
        np.testing.assert_allclose(pyfunc.predict(request), exported.embed_texts(texts).numpy(), rtol=1e-5, atol=1e-6)

    capsys.readouterr()
    assert evaluate.main(["--model", "models:/vljepa-test/1", "--cache", str(caches / "eval"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"classification", "retrieval", "vqa", "num_samples"}
    for value in (result["classification"]["top1"], result["retrieval"]["r1"], result["vqa"]["accuracy"]):
        assert 0.0 <= value <= 1.0


def test_a_stage_starts_from_the_previous_stages_model(ray_instance, caches, tmp_path, capsys, monkeypatch):
    """The paper's stages chain (pretraining, then SFT): --init-model starts from an exported model.
    At lr 0 the next stage must export exactly the model it started from, not a fresh init.
    The next stage names it by registry URI and reads two caches, in a registry separate from the tracking store; the Ray
    workers started before these variables were set: they resolve it with the driver's store."""
    first = _train(capsys, caches, tmp_path / "pretrain", "--stage", "pretrain-video", "--steps", "3",
                   "--checkpoint-every", "3")
    store, registry = (f"sqlite:///{tmp_path / name}" for name in ("store.db", "registry.db"))
    source = registered_uri(first["model"], store, "stage-one", registry_uri=registry)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry)
    # the SFT stage reads two caches as one dataset (a cache per source)
    _train(capsys, caches, tmp_path / "sft", "--init-model", source, "--lr", "0", "--steps", "2",
           "--checkpoint-every", "2", "--cache", str(caches / "eval"))
    metadata = json.loads((tmp_path / "sft" / "model" / "vljepa.json").read_text())["metadata"]
    assert metadata["cache"] == [str(caches / "train"), str(caches / "eval")]
    start, after = load_model(first["model"]).state_dict(), load_model(tmp_path / "sft" / "model").state_dict()
    assert set(start) == set(after)
    for name, tensor in start.items():
        torch.testing.assert_close(after[name], tensor, rtol=0, atol=0, msg=name)


def test_resume_continues_the_same_run_and_loss_curve(ray_instance, caches, tmp_path, capsys):
    """4 steps, then --resume to 8: the same MLflow run, and exactly the loss curve of 8 steps never
    stopped (optimizer, RNG and data position restored; a fresh run of the same seed repeats the first
    4). Pretraining's constant schedule, so that raising --steps leaves the first steps' lr alone."""
    run, stage = tmp_path / "run", ("--stage", "pretrain-video")
    first = _train(capsys, caches, run, *stage, "--steps", "4", "--checkpoint-every", "2")
    with pytest.raises(SystemExit, match="--resume"):
        train.main([*TRAIN, "--cache", str(caches / "train"), "--out", str(run), "--steps", "8"])
    with pytest.raises(SystemExit, match=r"--seed 0 \(now 1\)"):  # a resume that would train something else
        train.main([*TRAIN, "--cache", str(caches / "train"), "--out", str(run), *stage, "--resume", "--seed", "1"])
    second = _train(capsys, caches, run, *stage, "--steps", "8", "--checkpoint-every", "2", "--resume")
    assert first["tracking_uri"] == second["tracking_uri"] == f"sqlite:///{run / 'mlflow.db'}"
    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    resumed = _history(run)
    assert [step for step, _ in resumed] == list(range(1, 9))  # 1..4 from the first call, 5..8 after resuming
    _train(capsys, caches, tmp_path / "uninterrupted", *stage, "--steps", "8", "--checkpoint-every", "8")
    assert resumed == _history(tmp_path / "uninterrupted")


def _registered_step(run_dir) -> int | None:
    """The step of the latest checkpoint Ray Train's controller has registered, or None.

    A worker's reported checkpoint reaches storage at once but is registered only when the
    controller next polls the workers (every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s); a restart
    resumes from the registered one, so that, not a state.pt on disk, is what a kill can rely on."""
    snapshot = run_dir / "ray" / "train" / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):  # not written yet, or mid-write
        return None
    return int(latest["metrics"]["step"]) if latest else None


def test_killed_worker_recovers_from_its_checkpoint(ray_instance, caches, tmp_path, capsys):
    run = tmp_path / "run"
    steps, every = 40, 4
    args = [*TRAIN, "--cache", str(caches / "train"), "--out", str(run), "--steps", str(steps),
            "--checkpoint-every", str(every), "--max-failures", "2", "--json"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(train.main, args)
        pid_file, deadline = run / "pids" / "rank0.pid", time.monotonic() + 240
        while (registered := _registered_step(run)) is None:
            assert not running.done(), running.exception() or "finished before the kill"
            assert time.monotonic() < deadline, "no checkpoint registered in time"
            time.sleep(0.05)
        assert registered < steps, "training ended before the kill"
        victim = int(pid_file.read_text())
        os.kill(victim, signal.SIGKILL)
        assert running.result(timeout=300) == 0
    assert int(pid_file.read_text()) != victim  # a new worker took over
    logged = Counter(step for step, _ in _history(run))
    assert sorted(logged) == list(range(1, steps + 1))  # the curve continues to the requested end
    # resumed from the registered checkpoint (or a later one), not retrained from the start
    assert all(logged[step] == 1 for step in range(1, registered + 1))
    # the steps the killed worker ran past it are trained (and logged) once more, in one run that
    # starts just after a checkpoint; none when the kill fell right after one
    repeated = sorted(step for step, count in logged.items() if count > 1)
    assert all(logged[step] == 2 for step in repeated)
    if repeated:
        assert repeated == list(range(repeated[0], repeated[-1] + 1)) and (repeated[0] - 1) % every == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["metrics"]["step"] == steps


def test_two_workers_on_a_small_cpu_cluster_share_the_cores(ray_instance, caches, tmp_path, capsys):
    """2 workers on the 2-CPU test cluster: without leaving a CPU to Ray Data, this hangs."""
    from pipelines.train.driver import worker_cpus

    assert worker_cpus(2, 2, use_gpu=False) == pytest.approx(0.5)
    assert worker_cpus(2, 16, use_gpu=False) == 1.0 and worker_cpus(8, 8, use_gpu=True) == 1.0
    summary = _train(capsys, caches, tmp_path / "run", "--steps", "3", "--checkpoint-every", "3", "--workers", "2")
    assert summary["metrics"]["step"] == 3
    assert len(list((tmp_path / "run" / "pids").glob("rank*.pid"))) == 2


def column(dataset, name: str) -> list:
    """One column of a whole (small) dataset; a file with none of the stage's rows gives an empty
    block without columns, which holds nothing to check."""
    import ray

    tables = (ray.get(ref) for ref in dataset.to_arrow_refs())
    return [value for table in tables if table.num_rows for value in table[name].to_pylist()]


def test_a_pass_streams_its_epochs_and_the_replay_share(ray_instance, caches):
    """The training dataset on Ray Data: a pass of 2 epochs holds every stage row twice, tagged
    with its epoch; an SFT mix subsamples the replayed pretraining rows to their weight."""
    from ops.cache.files import CacheSource
    from pipelines.train.config import TrainConfig
    from pipelines.train.data import TRAIN_COLUMNS, build_train_dataset, count_rows, read_pass

    cache = str(caches / "train")
    videos = CacheSource(cache, ("video",), ("caption",))
    one_epoch = count_rows(videos)
    assert one_epoch > 0
    epochs = sorted(column(read_pass([videos], TRAIN_COLUMNS, epochs=2, seed=0), "epoch"))
    assert epochs == [0] * one_epoch + [1] * one_epoch

    config = TrainConfig(stage="sft", cache=cache, out="", replay_cache=cache, replay_weight=0.25)
    replayed = column(build_train_dataset(config), "replay")
    sft_rows = count_rows(CacheSource(cache, ("image", "video"), ("caption", "vqa", "classification")))
    assert len(replayed) - sum(replayed) == sft_rows  # every SFT row, once
    assert 0.1 < sum(replayed) / len(replayed) < 0.4  # ~25% replayed (a seeded draw per file)


def test_several_caches_are_read_as_one_dataset(ray_instance, caches, capsys):
    """`--cache A --cache B`: each epoch holds every stage row of both caches once (their shard
    names overlap, as two sources' 00000.tar would), or their `--cache-weights` shares; a replay
    share is taken of their sum."""
    from ops.cache.files import CacheSource
    from pipelines.decode.config import DecoderTrainConfig
    from pipelines.train.config import TrainConfig
    from pipelines.train.data import (
        DECODER_MEDIA_KINDS,
        DECODER_TASKS,
        build_decoder_dataset,
        build_train_dataset,
        count_rows,
        read_pass,
        stage_rows,
        stage_sources,
    )

    train_cache, eval_cache = str(caches / "train"), str(caches / "eval")
    sft = ("image", "video"), ("caption", "vqa", "classification")
    rows = [count_rows(CacheSource(url, *sft)) for url in (train_cache, eval_cache)]
    assert min(rows) > 0
    both = TrainConfig(stage="sft", cache=[train_cache, eval_cache], out="")
    assert len(column(build_train_dataset(both), "epoch")) == sum(rows)

    mixed = TrainConfig(stage="sft", cache=[train_cache, eval_cache], out="", replay_cache=train_cache, replay_weight=0.25)
    replay_rows = count_rows(CacheSource(train_cache, *sft[:1], ("caption",), replay=True))
    # the replayed rows make a quarter of the mix: a third of both caches' rows, not of the first's
    assert stage_sources(mixed)[-1].keep == pytest.approx(sum(rows) / 3 / replay_rows)
    replayed = column(build_train_dataset(mixed), "replay")
    assert len(replayed) - sum(replayed) == sum(rows)
    assert 0.15 < sum(replayed) / len(replayed) < 0.35

    # --cache-weights 1,3: a quarter of each epoch from the first cache, whatever their sizes (their video
    # captions are disjoint: the eval split holds combinations the train split never shows)
    videos = ("video",), ("caption",)
    video_rows = [stage_rows(CacheSource(url, *videos)) for url in (train_cache, eval_cache)]
    assert video_rows[0] == count_rows(CacheSource(train_cache, *videos))  # the manifest's count is the files'
    train_targets, eval_targets = (set(column(read_pass([CacheSource(url, *videos)], ("target",), epochs=1, seed=0),
                                              "target")) for url in (train_cache, eval_cache))
    assert train_targets and eval_targets and not train_targets & eval_targets
    natural_share = video_rows[1] / sum(video_rows)
    even = TrainConfig(stage="pretrain-video", cache=[train_cache, eval_cache], out="", cache_weights=[1, 3])
    targets = column(build_train_dataset(even), "target")
    announced = capsys.readouterr().out  # the run says what an epoch holds
    assert (f"train: 2 caches as one dataset, ~{sum(video_rows)} rows per epoch: {train_cache} {video_rows[0]} rows "
            f"read x0.33; {eval_cache} {video_rows[1]} rows read x3.00") in announced
    share = sum(target in eval_targets for target in targets) / len(targets)
    print(f"video rows {video_rows}, natural share {natural_share:.2f}, weighted share {share:.2f} of {len(targets)}")
    assert natural_share < 0.35 and 0.65 < share < 0.85
    assert abs(len(targets) - sum(video_rows)) < 0.2 * sum(video_rows)  # an epoch keeps its size

    captions = [count_rows(CacheSource(url, DECODER_MEDIA_KINDS, DECODER_TASKS)) for url in (train_cache, eval_cache)]
    decoder = DecoderTrainConfig(model="m", cache=[train_cache, eval_cache], out="")
    assert len(column(build_decoder_dataset(decoder), "epoch")) == sum(captions)
    eval_captions = set(column(read_pass([CacheSource(eval_cache, DECODER_MEDIA_KINDS, DECODER_TASKS)], ("target",),
                                         epochs=1, seed=0), "target"))
    weighted_decoder = DecoderTrainConfig(model="m", cache=[train_cache, eval_cache], out="", cache_weights=[1, 3])
    targets = column(build_decoder_dataset(weighted_decoder), "target")
    print(f"captions {captions}, weighted share {sum(t in eval_captions for t in targets) / len(targets):.2f}")
    assert captions[1] / sum(captions) < 0.35 < 0.65 < sum(t in eval_captions for t in targets) / len(targets)


def test_the_loops_collation_streams_batches_without_deprecated_calls(ray_instance, caches, tiny_model):
    """The worker's batch pipeline as the loop builds it (an SFT stage with queries), one batch
    through `iter_torch_batches`: Ray Data >= 2.47 deprecates a plain function as collate_fn, and
    torch warns on wrapping Ray Data's read-only arrays; both are errors here."""
    from pipelines.train.config import TrainConfig
    from pipelines.train.data import build_train_dataset
    from pipelines.train.loop import collation

    config = TrainConfig(stage="sft", cache=str(caches / "train"), out="")
    dataset = build_train_dataset(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = next(iter(dataset.iter_torch_batches(batch_size=4, collate_fn=collation(tiny_model, config))))
    assert batch["s_v"].shape[0] == batch["target_ids"].shape[0] == batch["epoch"].shape[0] == 4
    assert batch["epoch"].dtype == torch.int64 and "query_ids" in batch


@pytest.mark.parametrize("flag", ["--cache", "--eval-cache"])
@pytest.mark.parametrize("verb", ["train", "train-decoder"])
def test_a_mistyped_cache_fails_before_the_run_directory_is_made(verb, flag, caches, captioning_model_dir, tmp_path):
    from pipelines.decode import train_decoder

    caches_of = {"--cache": str(caches / "train"), "--eval-cache": str(caches / "eval")}
    caches_of[flag] = str(caches / "trian")  # the typo
    args = [arg for pair in caches_of.items() for arg in pair] + ["--out", str(tmp_path / "run")]
    with pytest.raises(ValueError, match="trian holds no feature cache"):
        if verb == "train":
            train.main([*TRAIN, *args])
        else:
            train_decoder.main(["--model", str(captioning_model_dir), "--registered-model", "", *args])
    # nothing written: the corrected command runs without --resume
    assert not (tmp_path / "run").exists()


@pytest.fixture
def foreign_cache(caches, tmp_path):
    """The train cache as if built with `--preset paper`: features of another x-encoder."""
    import shutil

    from ops.cache.feature_cache import FeatureCache, Fingerprint

    foreign = tmp_path / "vitl-cache"
    shutil.copytree(caches / "train", foreign)
    cache = FeatureCache(str(foreign))
    fields = {**cache.manifest()["fingerprint_fields"], "x_encoder": "facebook/vjepa2-vitl-fpc64-256",
              "x_encoder_config_hash": "0123456789abcdef"}
    cache.write_manifest(Fingerprint(**fields), cache.manifest()["shards"])
    return foreign


def test_a_cache_of_another_x_encoder_is_refused_before_anything_is_written(foreign_cache, tmp_path):
    # a cache built with `--preset paper` trained with the default preset: refused by the driver,
    # where the workers would fail on a shape mismatch after Ray Train started them
    with pytest.raises(ValueError, match="holds features of x-encoder facebook/vjepa2-vitl-fpc64-256"):
        train.main([*TRAIN, "--cache", str(foreign_cache), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", ["evaluate", "train-decoder --mode predicted", "train-decoder --eval-cache",
                                  "index-build"])
def test_a_model_refuses_the_features_of_another_x_encoder(verb, foreign_cache, caches, captioning_model_dir, tmp_path):
    # the model records the x-encoder it was trained on; every verb that runs it on cached S_V
    # checks the cache against it before starting anything
    from pipelines.decode import train_decoder
    from pipelines.retrieval import index_build

    model, foreign, good = str(captioning_model_dir), str(foreign_cache), str(caches / "train")
    refusal = f"holds features of x-encoder facebook/vjepa2-vitl-fpc64-256 .* model {model} reads features of tiny-vjepa2-v1"
    decoder_run = ["--model", model, "--registered-model", "", "--out", str(tmp_path / "run")]
    with pytest.raises(ValueError, match=refusal):
        if verb == "evaluate":
            evaluate.main(["--model", model, "--cache", foreign])
        elif verb == "train-decoder --mode predicted":
            train_decoder.main([*decoder_run, "--mode", "predicted", "--cache", foreign])
        elif verb == "train-decoder --eval-cache":  # text mode reads the training cache's captions only
            train_decoder.main([*decoder_run, "--cache", good, "--eval-cache", foreign])
        else:
            index_build.main(["--model", model, "--cache", foreign, "--index", str(tmp_path / "index")])
    assert not (tmp_path / "run").exists() and not (tmp_path / "index").exists()
