"""`vljepa submit` against a real token-authenticated cluster started with `ray start --head`:
a cache-features job and a train job write to S3 (moto on 127.0.0.1), job management sub-verbs
work, and a submission without the token is refused."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time

import mlflow
import pytest
import s3fs

from tests.integration.local_cluster import start_head

BUCKET = "vljepa-cluster"


@pytest.fixture(scope="module")
def token_cluster(s3_endpoint, tmp_path_factory):
    token = secrets.token_hex(16)
    cluster = start_head(token, num_cpus=2)
    token_file = tmp_path_factory.mktemp("secrets") / "ray-token"
    token_file.write_text(token)
    yield cluster, token_file
    cluster.stop()


def submit(args: list[str], home, timeout: int = 600) -> subprocess.CompletedProcess:
    """`vljepa submit ...` as a user shell runs it: no Ray token in the environment or in ~/.ray."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_AUTH_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "submit", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_jobs_run_on_the_cluster_and_write_to_s3(token_cluster, sample_data, tmp_path, monkeypatch):
    cluster, token_file = token_cluster
    s3 = s3fs.S3FileSystem()
    if not s3.exists(BUCKET):
        s3.mkdir(BUCKET)
    s3.put(str(sample_data / "train") + "/", f"{BUCKET}/shards/", recursive=True)
    common = ["--address", cluster.dashboard, "--token-file", str(token_file),
              "--env", f"VLJEPA_HOME={tmp_path / 'home'}"]

    cached = submit([*common, "--", "cache-features", "--shards", f"s3://{BUCKET}/shards",
                     "--out", f"s3://{BUCKET}/cache", "--preset", "tiny"], tmp_path)
    assert cached.returncode == 0, cached.stderr[-3000:]
    assert "SUCCEEDED" in cached.stderr
    manifest = json.loads(s3.cat(f"{BUCKET}/cache/manifest.json"))
    assert manifest["shards"] and s3.glob(f"{BUCKET}/cache/*.parquet")

    run = tmp_path / "run"
    trained = submit([*common, "--", "train", "--stage", "sft", "--cache", f"s3://{BUCKET}/cache", "--out", str(run),
                      "--storage", f"s3://{BUCKET}/checkpoints", "--preset", "tiny", "--steps", "4", "--batch-size", "4",
                      "--warmup-steps", "1", "--checkpoint-every", "2", "--registered-model", "",
                      "--eval-cache", f"s3://{BUCKET}/cache", "--eval-every", "2"], tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    states = s3.glob(f"{BUCKET}/checkpoints/train/checkpoint_*/state.pt")
    assert states and len(s3.glob(f"{BUCKET}/checkpoints/train/checkpoint_*/state.json")) == len(states)
    # the eval cache on S3, read once into a local spool, scored at steps 2 and 4 from there
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    [logged] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    history = client.get_metric_history(logged.info.run_id, "eval.classification.top1")
    assert sorted(m.step for m in history) == [2, 4]
    assert (run / "model" / "vljepa.json").exists()
    exported = tmp_path / "exported"  # export --run finds the run's checkpoints on S3
    from pipelines.models import export

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert export.main(["--run", str(run), "--out", str(exported)]) == 0
    assert not list((tmp_path / "tmp").iterdir())  # the state fetched from S3 went with the export
    assert json.loads((exported / "vljepa.json").read_text())["metadata"]["steps"] == 4

    failing = submit([*common, "--", "evaluate", "--model", str(tmp_path / "missing"), "--cache", "x"], tmp_path)
    assert failing.returncode == 1 and "FAILED" in failing.stderr  # the job's failure is the exit status


def test_job_management_sub_verbs(token_cluster, tmp_path):
    cluster, token_file = token_cluster
    common = ["--address", cluster.dashboard, "--token-file", str(token_file)]
    started = submit([*common, "--no-wait", "--env", f"VLJEPA_HOME={tmp_path}", "--", "summary", "--preset", "tiny"], tmp_path)
    assert started.returncode == 0, started.stderr[-2000:]
    job_id = started.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 300
    while (status := submit(["status", job_id, *common], tmp_path).stdout.strip()) not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status == "SUCCEEDED"
    assert "predictor" in submit(["logs", job_id, *common], tmp_path).stdout
    assert job_id in submit(["list", *common], tmp_path).stdout


def test_a_submission_without_the_token_is_refused(token_cluster, tmp_path):
    cluster, _ = token_cluster
    refused = submit(["--address", cluster.dashboard, "--", "summary", "--preset", "tiny"], tmp_path)
    assert refused.returncode == 2
    assert "refused" in refused.stderr and "--token-file" in refused.stderr
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token")
    assert submit(["--address", cluster.dashboard, "--token-file", str(wrong), "--", "summary"], tmp_path).returncode == 2


def test_unknown_or_missing_verbs_are_usage_errors(tmp_path):
    assert submit(["--", "demo"], tmp_path).returncode == 2
    assert submit([], tmp_path).returncode == 2


def test_an_address_with_no_cluster_says_what_to_check(tmp_path):
    # port 9 (discard) on loopback: nothing listens, the connection is refused at once
    refused = submit(["--address", "http://127.0.0.1:9", "--", "summary", "--preset", "tiny"], tmp_path, timeout=120)
    assert refused.returncode == 2
    assert "Failed to connect" in refused.stderr and "is the cluster up? Give its dashboard with --address" in refused.stderr
