"""A separate Ray cluster for the cluster tests, started the way users start one (`ray start
--head`), with token authentication, in its own temp dir so that it never meets the test session's
own Ray instance; stopped by killing exactly its processes (`ray stop` would stop every cluster
on the machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipelines.cluster.net import free_loopback_port

BIN = Path(sys.executable).parent


@dataclass
class LocalCluster:
    gcs_port: int
    dashboard_port: int
    temp_dir: str
    env: dict

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def processes(self) -> list[psutil.Process]:
        marks = (f":{self.gcs_port}", f"={self.gcs_port}", self.temp_dir)
        found = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if any(mark in cmdline for mark in marks) and process.pid != os.getpid():
                found.append(process)
        return found

    def stop(self) -> None:
        for process in self.processes():
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(token: str, num_cpus: int = 2, extra_env: dict | None = None) -> LocalCluster:
    # Unix socket paths must stay under ~107 bytes: a short temp dir, not pytest's deep one.
    temp_dir = tempfile.mkdtemp(prefix="vlj-", dir="/tmp")
    env = {**os.environ, **(extra_env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    cluster = LocalCluster(gcs_port=free_loopback_port(), dashboard_port=free_loopback_port(), temp_dir=temp_dir, env=env)
    subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={cluster.gcs_port}", "--node-ip-address=127.0.0.1",
                    f"--dashboard-port={cluster.dashboard_port}", "--dashboard-host=127.0.0.1",
                    "--include-dashboard=true", f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}",
                    # every per-node port explicit: the test session's own Ray instance holds the defaults
                    *(f"--{name}={free_loopback_port()}" for name in (
                        "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                        "metrics-export-port", "runtime-env-agent-port", "node-manager-port", "object-manager-port")),
                    "--disable-usage-stats"],
                   env=env, check=True, timeout=180, capture_output=True)
    deadline = time.monotonic() + 90
    while True:  # the job API answers (401 without a token) once the dashboard is up
        try:
            urllib.request.urlopen(f"{cluster.dashboard}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if time.monotonic() > deadline:
                cluster.stop()
                raise RuntimeError("the dashboard of the test cluster did not come up")
            time.sleep(1)
    return cluster
