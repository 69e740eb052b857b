"""infra/: every manifest parses, has what KubeRay / Kubernetes require, runs real `vljepa` verbs,
keeps secrets in Secrets, and turns Ray token authentication on; the Dockerfile builds the pins."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from pipelines.cli.main import VERBS

INFRA = Path(__file__).resolve().parents[3] / "infra"
MANIFESTS = sorted((INFRA / "k8s").glob("*.yaml"))
SENSITIVE = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY", re.IGNORECASE)


def documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def ray_cluster_specs() -> list[tuple[str, dict]]:
    specs = []
    for name, doc in documents():
        spec = doc["spec"]
        if doc["kind"] == "RayCluster":
            specs.append((name, spec))
        elif doc["kind"] == "RayJob":
            specs.append((name, spec["rayClusterSpec"]))
        elif doc["kind"] == "RayService":
            specs.append((name, spec["rayClusterConfig"]))
    return specs


def containers(doc: dict) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "containers" in node and isinstance(node["containers"], list):
                found.extend(node["containers"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


def test_every_kind_the_issue_names_is_there():
    kinds = [(doc["apiVersion"], doc["kind"]) for _, doc in documents()]
    for kind in ("RayCluster", "RayJob", "RayService"):
        assert ("ray.io/v1", kind) in kinds
    assert sum(kind == "RayJob" for _, kind in kinds) == 2
    assert {"Deployment", "StatefulSet", "Service"} <= {kind for _, kind in kinds}


@pytest.mark.parametrize("name, spec", ray_cluster_specs())
def test_ray_clusters_have_a_cpu_head_and_gpu_workers_with_token_auth(name, spec):
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP", f"{name}: the dashboard / job API must not get a public address"
    head_container = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    (group,) = spec["workerGroupSpecs"]
    worker = group["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for container in (head_container, worker):
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"]
        assert container["image"] == head_container["image"]


@pytest.mark.parametrize("name, spec", [(n, s) for n, s in ray_cluster_specs() if n in ("raycluster.yaml",
                                                                                          "rayjob-train.yaml")])
def test_training_workers_announce_their_end_as_a_preemption_within_their_grace_period(name, spec):
    """A reclaimed spot node's pods are stopped; their preStop hook drains the node with reason
    PREEMPTION (the command tests/integration/train/test_multinode.py runs), which the training workers
    checkpoint on, and waits out the drain and Ray Train's first poll after it (2 s by default: it
    restarts the group then; a node gone before that counts as a failure, not a preemption).
    Kubernetes kills the pod at its grace period, so the wait must end before it; Ray Train must see
    the drain early in it."""
    (group,) = spec["workerGroupSpecs"]
    pod = group["template"]["spec"]
    worker = pod["containers"][0]
    shell, flag, script = worker["lifecycle"]["preStop"]["exec"]["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    drain, wait = [shlex.split(part) for part in script.split(";")]
    assert drain[:2] == ["ray", "drain-node"] and drain[drain.index("--reason") + 1] == "DRAIN_NODE_REASON_PREEMPTION"
    deadline_s = int(drain[drain.index("--deadline-remaining-seconds") + 1])
    env = {e["name"]: e.get("value") for e in worker["env"]}
    poll_s = float(env.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0))
    assert wait[0] == "sleep" and int(wait[1]) >= deadline_s + poll_s + 1, name
    assert int(wait[1]) + 5 <= pod["terminationGracePeriodSeconds"], name  # 5 s for `ray drain-node` to connect
    assert float(env["RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S"]) <= deadline_s / 10


def test_secrets_only_come_from_secrets():
    for name, doc in documents():
        for container in containers(doc):
            for env in container.get("env", []):
                if SENSITIVE.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{name}: {env['name']} is not from a Secret"
        assert doc["kind"] != "Secret", f"{name}: Secrets are created out of band, never committed"


def entrypoint_verbs() -> list[tuple[str, list[str]]]:
    return [(name, shlex.split(doc["spec"]["entrypoint"])) for name, doc in documents() if doc["kind"] == "RayJob"]


@pytest.mark.parametrize("name, argv", entrypoint_verbs())
def test_job_entrypoints_name_real_verbs_and_parse(name, argv):
    assert argv[0] == "vljepa" and argv[1] in VERBS, f"{name}: {argv[:2]}"
    module = VERBS[argv[1]][0]
    assert importlib.util.find_spec(module) is not None
    if argv[1] == "train":  # its parser is side-effect free: the arguments must be accepted as written
        from pipelines.train.train import parse_args

        config, _ = parse_args(argv[2:])
        assert config.preset == "paper" and config.workers > 1


@pytest.mark.parametrize("name", [n for n, d in documents() if d["kind"] == "RayJob"])
def test_jobs_shut_down_and_carry_a_runtime_env(name):
    (doc,) = [d for n, d in documents() if n == name]
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    assert isinstance(yaml.safe_load(doc["spec"]["runtimeEnvYAML"])["env_vars"], dict)


def test_rayservice_serves_the_serve_config():
    (doc,) = [d for _, d in documents() if d["kind"] == "RayService"]
    served = ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    local = yaml.safe_load((INFRA / "serve_config.yaml").read_text())
    assert [a.model_dump(exclude_unset=True) for a in served.applications] == \
        [ServeDeploySchema.model_validate(local).applications[0].model_dump(exclude_unset=True)]
    env = {e["name"] for c in containers(doc) for e in c.get("env", [])}
    assert "VLJEPA_SERVE_TOKEN" in env  # the HTTP API is token-protected in the cluster
    for container in containers(doc):  # one Serve mode in every Ray process: each reads it at start
        values = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert values.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1", container["name"]


def test_the_podmonitor_scrapes_the_port_every_serving_pod_exports_metrics_on():
    monitor = next(doc for _, doc in documents() if doc["kind"] == "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"] == {"ray.io/is-ray-node": "yes"}  # KubeRay's label
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    service = next(doc for _, doc in documents() if doc["kind"] == "RayService")["spec"]["rayClusterConfig"]
    groups = [service["headGroupSpec"], *service["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
        assert endpoint["port"] in ports, container["name"]
        assert group["rayStartParams"]["metrics-export-port"] == str(ports[endpoint["port"]]), container["name"]


def test_mlflow_server_uses_a_database_and_s3_artifacts():
    (deployment,) = [d for n, d in documents() if n == "mlflow.yaml" and d["kind"] == "Deployment"]
    command = " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--backend-store-uri \"postgresql://" in command and "--artifacts-destination s3://" in command
    services = {d["metadata"]["name"] for n, d in documents() if d["kind"] == "Service"}
    cluster_env = {e["name"]: e.get("value") for _, spec in ray_cluster_specs()
                   for e in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert cluster_env["MLFLOW_TRACKING_URI"] == "http://vljepa-mlflow:5000" and "vljepa-mlflow" in services


def test_dockerfile_is_cuda_based_and_installs_the_pins():
    text = (INFRA / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+", text, re.MULTILINE)
    assert "COPY pyproject.toml constraints.txt" in text and "infra/setup_venv.sh" in text
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cu" in text  # the CUDA build of the pinned torch
    assert re.search(r"^USER (?!root)", text, re.MULTILINE)
