"""`vljepa serve` as a user runs it: its own local Ray instance, default resources, a model with a
Y-decoder (three model replicas) on this machine, a retrieval index. On a 2-CPU machine the decoder's replica used to
wait forever for a CPU: the command never said it was serving, /readyz said ready anyway, and
/v1/caption hung."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from pipelines.cluster.exported_metrics import wait_for
from pipelines.cluster.net import free_loopback_port
from tests.media_fixtures import clip_bytes

ROOT = Path(__file__).resolve().parents[3]


def test_vljepa_serve_starts_every_replica_on_this_machine(captioning_model_dir, caches, tmp_path):
    from pipelines.retrieval import index_build

    index = tmp_path / "index"
    assert index_build.main(["--model", str(captioning_model_dir), "--cache", str(caches / "eval"),
                             "--index", str(index)]) == 0
    port, metrics_port = free_loopback_port(), free_loopback_port()
    # a local instance of its own (not the test session's): as on a user's machine
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="vlj-", dir="/tmp")  # short: Ray's socket paths
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "pipelines.serve.app", "--model", str(captioning_model_dir),
                                    "--port", str(port), "--index", str(index),
                                    "--metrics-port", str(metrics_port)],
                                   stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while "serving on" not in log.read_text():
            assert process.poll() is None, f"vljepa serve exited {process.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never said it was serving:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        assert requests.get(f"{base}/readyz", timeout=30).status_code == 200
        caption = requests.post(f"{base}/v1/caption", files={"media": ("clip.mp4", clip_bytes())}, timeout=60)
        assert caption.status_code == 200 and caption.json()["text"], caption.text
        # the index replica's start-up notice reaches this console, though Serve buffers replica
        # logs in the throughput-optimized mode (pipelines/serve/deployments.py)
        total = requests.get(f"{base}/v1/index/items", params={"limit": 1}, timeout=30).json()["total"]
        said = f"INFO retrieval index {index}: {total} rows, exact search"
        assert total > 0 and any(line.rstrip().endswith(said) for line in log.read_text().splitlines()), \
            log.read_text()[-3000:]
        # --metrics-port: the instance's agent exports the application's metrics there
        assert f"metrics: http://127.0.0.1:{metrics_port}/metrics" in log.read_text()
        assert wait_for(metrics_port, "ray_vljepa_index_rows", lambda held: held == total) == total
        assert wait_for(metrics_port, "ray_vljepa_media_decoded_total", lambda n: n >= 1, kind="video") == 1
        if (os.cpu_count() or 1) < 3:  # fewer CPUs than model replicas: each got a share
            assert "CPU each (--num-cpus sets it)" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)  # what a process manager sends; `vljepa serve` shuts Serve down
        try:
            assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
