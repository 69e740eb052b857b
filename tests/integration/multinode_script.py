"""Run by test_multinode.py in its own process (a process drives one Ray cluster): a head and a
second node as separate raylets (ray.cluster_utils.Cluster), feature caching across them, then
three 2-worker runs spread over two nodes:
- node lost (`vljepa train`): mid-training the second node is killed without grace (SIGKILL), and a
  replacement node joins later;
- node preempted (`vljepa train`, then `vljepa train-decoder`): mid-training the second node is
  drained with reason PREEMPTION and a deadline, as the training pods' preStop hook does when
  Kubernetes stops a reclaimed spot node's pod; a replacement has joined before, and the node goes
  a few seconds after its deadline, as the hook waits.
Writes one JSON object to OUT/result.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

DRAIN_DEADLINE_S = 10  # room for the notice's checkpoint and a last one before the deadline
# as infra/k8s's preStop hook waits: Ray Train restarts the group at its first poll after the deadline
# (every 2 s); a node gone before that counts as a failure, not a preemption
AFTER_DEADLINE_S = 4


def main(shards: str, out: str) -> int:
    # Ray Train looks for drains every 5 s by default; a test's notice window is shorter than a cloud's
    os.environ["RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S"] = "0.5"
    # 2 CPUs per node: a training worker takes 1, Ray Data's read tasks the other
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        return run(cluster, shards, Path(out))
    finally:
        ray.shutdown()
        cluster.shutdown()


def start_training(cache: Path, run: Path, outcome: dict, *extra: str, model: Path | None = None) -> threading.Thread:
    """`vljepa train` (SFT, tiny preset), or `vljepa train-decoder` on the exported `model`."""
    from pipelines.decode import train_decoder
    from pipelines.train import train

    what = ["--stage", "sft", "--preset", "tiny"] if model is None else ["--model", str(model)]
    command = train if model is None else train_decoder

    def training():
        try:
            outcome["rc"] = command.main([
                *what, "--cache", str(cache), "--out", str(run),
                "--workers", "2", "--placement-strategy", "STRICT_SPREAD", "--cpus-per-worker", "1",
                "--batch-size", "4", "--warmup-steps", "1", "--registered-model", "", *extra])
        except BaseException:  # noqa: BLE001 - reported in the result, where the test shows it
            outcome["error"] = traceback.format_exc()[-3000:]

    thread = threading.Thread(target=training)
    thread.start()
    return thread


def wait_for(condition, thread: threading.Thread, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit(f"training never reached {what}")
        time.sleep(0.5)


def starts_of(run: Path) -> list[str]:
    log = run / "pids" / "starts.log"
    return log.read_text().splitlines() if log.exists() else []


def registered_step(run: Path) -> int | None:
    """The step of the latest checkpoint Ray Train has registered (what a restart resumes from), or None."""
    snapshot = run / "ray" / "train" / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
    except (OSError, ValueError):  # not yet written, or being written
        return None
    return int(latest["metrics"]["step"]) if latest else None


def node_lost(cluster: Cluster, second, cache: Path, run: Path) -> tuple[dict, object]:
    outcome: dict = {}
    thread = start_training(cache, run, outcome, "--steps", "30", "--checkpoint-every", "3", "--max-failures", "3",
                            "--log-every", "1")
    # A checkpoint written but not yet registered (Ray Train registers at its next poll of the
    # workers) is not restored from: wait for one Ray Train names, else the restart is from scratch
    wait_for(lambda: registered_step(run) is not None, thread, "a registered checkpoint")
    registered = registered_step(run)
    # without grace: SIGKILL to the raylet and its processes, as when a machine is lost (not Ray's
    # default SIGTERM and grace period, which lets a worker finish what it was doing)
    cluster.remove_node(second, allow_graceful=False)
    killed_at = time.time()
    time.sleep(5)
    replacement = cluster.add_node(num_cpus=2)  # a replacement node joins, as an autoscaler would provide
    thread.join(timeout=600)
    return {"rc": outcome.get("rc"), "error": outcome.get("error"), "starts": starts_of(run), "killed_node": second.node_id,
            "killed_at": killed_at, "registered_step": registered, "logged_steps": logged_steps(run)}, replacement


def logged_steps(run: Path) -> list[int]:
    """The step of each loss rank 0 has logged to the run's MLflow store (--log-every 1), repeats included."""
    import mlflow

    run_id_file = run / "mlflow_run_id.txt"
    if not run_id_file.exists():
        return []
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    return [metric.step for metric in client.get_metric_history(run_id_file.read_text().strip(), "loss")]


def steps_logged(run: Path) -> int:
    """Steps rank 0 has logged (--log-every 1): training is under way."""
    return len(logged_steps(run))


def drain_as_the_pods_prestop_hook_does(cluster: Cluster, node_id: str, deadline_s: int = DRAIN_DEADLINE_S) -> None:
    """What infra/k8s's training worker pods run before Kubernetes stops them (their preStop hook):
    `ray drain-node` with reason PREEMPTION and a deadline. In a pod the node defaults to the pod's
    own; here several nodes share the machine, so it is named."""
    subprocess.run([str(Path(sys.executable).parent / "ray"), "drain-node", "--address", cluster.address,
                    "--node-id", node_id, "--reason", "DRAIN_NODE_REASON_PREEMPTION",
                    "--reason-message", "spot instance reclaimed (test)",
                    "--deadline-remaining-seconds", str(deadline_s)], check=True, capture_output=True)


def node_preempted(cluster: Cluster, worker_node, cache: Path, run: Path, model: Path | None = None) -> tuple[dict, object]:
    """No periodic checkpoint before the end (--checkpoint-every 1000) and no failure allowed: the run
    must resume from a checkpoint it takes after the notice, and the preemption must not count."""
    outcome: dict = {}
    thread = start_training(cache, run, outcome, "--steps", "150", "--checkpoint-every", "1000", "--max-failures", "0",
                            "--preemption-check-s", "0.5", "--log-every", "1", model=model)
    # The autoscaler's replacement, started before the drain: on a cloud it starts on another
    # machine, here its start-up would take the cores the countdown to the deadline is timed on. Once
    # the workers are placed (on the two nodes there are), so that one runs on the node drained.
    wait_for(lambda: len(starts_of(run)) >= 2, thread, "its workers' start")
    replacement = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    wait_for(lambda: steps_logged(run) >= 5, thread, "its fifth step")
    steps_at_notice = steps_logged(run)
    drain_as_the_pods_prestop_hook_does(cluster, worker_node.node_id)
    noticed_at = time.time()
    time.sleep(DRAIN_DEADLINE_S + AFTER_DEADLINE_S)
    cluster.remove_node(worker_node)  # the cloud takes the node after its deadline, as the pod's hook waits
    thread.join(timeout=600)
    return {"rc": outcome.get("rc"), "error": outcome.get("error"), "starts": starts_of(run),
            "preempted_node": worker_node.node_id, "noticed_at": noticed_at, "steps_at_notice": steps_at_notice}, replacement


def run(cluster: Cluster, shards: str, out_dir: Path) -> int:
    from pipelines.cache import cache_features
    from pipelines.models import export

    second = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    cache = out_dir / "cache"
    assert cache_features.main(["--shards", shards, "--out", str(cache), "--preset", "tiny"]) == 0
    lost, replacement = node_lost(cluster, second, cache, out_dir / "run")
    preempted, replacement = node_preempted(cluster, replacement, cache, out_dir / "preempted")
    model = out_dir / "model"
    assert export.main(["--preset", "tiny", "--out", str(model)]) == 0
    decoder_preempted, _ = node_preempted(cluster, replacement, cache, out_dir / "decoder-preempted", model=model)
    result = json.dumps({"cached_shards": len(list(cache.glob("*.parquet"))), "lost": lost, "preempted": preempted,
                         "decoder_preempted": decoder_preempted})
    # a file, not stdout: Ray's raylet warnings reach stdout asynchronously, after any last line
    (out_dir / "result.json").write_text(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
