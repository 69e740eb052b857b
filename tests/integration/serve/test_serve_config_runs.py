"""Ray Serve's own CLI runs infra/serve_config.yaml: `serve run CONFIG`, as a user runs it, against the
test session's Ray instance. The config is the file users deploy with only what a 2-CPU test
machine needs changed (the model, the port, no GPUs, no CPU reservations); its deployment
settings (two ingress replicas, autoscaling, two index replicas) are applied as written, and two
ingress replicas adding to the index at once lose nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import torch
import yaml

from model.export import load_model
from pipelines.cluster.net import free_loopback_port

CONFIG = Path(__file__).resolve().parents[3] / "infra" / "serve_config.yaml"
SERVE = Path(sys.executable).parent / "serve"


def _config_for_this_machine(model_dir: Path, port: int, **extra_args) -> dict:
    config = yaml.safe_load(CONFIG.read_text())
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    app["args"].update(model=str(model_dir), num_gpus=0, decoder_num_gpus=0, num_cpus=0, **extra_args)
    return config


def _serve_run(config: dict, path: Path, address: str) -> tuple[subprocess.Popen, Path]:
    path.write_text(yaml.safe_dump(config))
    log = path.with_suffix(".log")
    with log.open("w") as out:  # a file, not a pipe: serve run logs until it is stopped
        process = subprocess.Popen([str(SERVE), "run", str(path), "--address", address],
                                   stdout=out, stderr=subprocess.STDOUT)
    return process, log


def _stop(process: subprocess.Popen) -> None:
    from ray import serve

    process.send_signal(signal.SIGINT)  # serve run's Ctrl-C: it shuts Serve down
    try:
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        # This process's Serve client still holds the controller serve run started (serve.status
        # below); drop it, so later tests' Serve calls find a live controller, and if the
        # controller survived, shut it down.
        serve.shutdown()


def test_serve_run_deploys_the_config_as_written(ray_instance, captioning_model_dir, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve

    from pipelines.retrieval import index_build
    from tests.media_fixtures import clip_bytes, image_bytes

    index = tmp_path / "index"  # for this model, empty: clients add to it
    assert index_build.main(["--model", str(captioning_model_dir), "--index", str(index)]) == 0
    port = free_loopback_port()
    address = ray_instance.get_runtime_context().gcs_address
    config = _config_for_this_machine(captioning_model_dir, port, index=str(index))
    process, log = _serve_run(config, tmp_path / "config.yaml", address)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"serve run exited {process.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()[-3000:]}"
            try:
                if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # the proxy is up before the replicas answer
                pass
            time.sleep(1)

        texts = ["a red ball moves left", "a blue cube"]
        response = requests.post(f"{base}/v1/embed/text", json={"texts": texts}, timeout=60)
        assert response.status_code == 200, response.text
        expected = load_model(captioning_model_dir).eval().embed_texts(texts)
        torch.testing.assert_close(torch.tensor(response.json()["embeddings"]), expected, atol=1e-5, rtol=1e-5)

        deployments = serve.status().applications["vljepa"].deployments
        assert set(deployments) == {"Ingress", "VisualPredictor", "TextEncoder", "TextDecoder", "RetrievalIndex"}
        (ingress,) = [d for d in config["applications"][0]["deployments"] if d["name"] == "Ingress"]
        assert ingress["num_replicas"] > 1  # the config's, not Serve's default of 1
        assert sum(deployments["Ingress"].replica_states.values()) == ingress["num_replicas"]
        replicas = config["applications"][0]["args"]["index_replicas"]
        assert replicas > 1 and sum(deployments["RetrievalIndex"].replica_states.values()) == replicas

        # adds sent at once, spread over both ingress replicas and both index replicas: each a
        # commit to the one table, none lost
        media = [clip_bytes(seed=i) if i % 2 else image_bytes() for i in range(16)]
        with ThreadPoolExecutor(8) as pool:
            added = list(pool.map(lambda i: requests.post(f"{base}/v1/index/items", files={"media": ("m", media[i])},
                                                          data={"id": f"at-once/{i:02d}"}, timeout=120), range(16)))
        assert [a.status_code for a in added] == [200] * 16, [a.text for a in added if a.status_code != 200]
        listed = requests.get(f"{base}/v1/index/items", timeout=30).json()
        assert sorted(i["id"] for i in listed["items"]) == [f"at-once/{i:02d}" for i in range(16)]
        from ops.retrieval.table import open_table

        assert open_table(str(index)).count_rows() == 16  # in the table, not only in a replica
    finally:
        _stop(process)
    assert process.returncode == 0, log.read_text()[-3000:]
    with pytest.raises(requests.ConnectionError):  # Serve went down with it: its proxy is gone
        requests.get(f"{base}/healthz", timeout=5)


def test_serve_run_refuses_a_misspelt_argument(ray_instance, captioning_model_dir, tmp_path):
    """`serve run` keeps running a config whose application failed to deploy; `serve status` (here
    its Python twin) says why, naming the field."""
    from ray import serve

    config = _config_for_this_machine(captioning_model_dir, free_loopback_port(), max_requets_mb=2)
    process, log = _serve_run(config, tmp_path / "config.yaml", ray_instance.get_runtime_context().gcs_address)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"serve run exited {process.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no verdict in time:\n{log.read_text()[-3000:]}"
            app = serve.status().applications.get("vljepa")
            if app is not None and app.status not in ("NOT_STARTED", "DEPLOYING"):
                break
            time.sleep(1)
        assert app.status == "DEPLOY_FAILED"
        assert "max_requets_mb" in app.message and "Extra inputs are not permitted" in app.message, app.message
        assert not app.deployments  # nothing was built
    finally:
        _stop(process)
