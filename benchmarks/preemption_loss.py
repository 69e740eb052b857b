"""What a spot preemption costs a training run: the steps the restart trains again.

A local multi-node cluster (a head and a second node, ray.cluster_utils.Cluster) runs `vljepa train`
(tiny preset, 2 workers, one per node, no periodic checkpoint). Mid-run the second node is drained
as infra/k8s's preStop hook drains a reclaimed spot node's pod (reason PREEMPTION, a --deadline-s
deadline, 20 s as in the manifests; a replacement node joined before), and the node is removed 4 s
after its deadline, as the hook waits. The workers checkpoint on the notice and once more just before the deadline
(pipelines/train/preemption.py); the restart resumes from the last. From the same run: the steps trained
before the deadline, and what a restart would train again from each checkpoint: the notice's
(what the run lost before the last checkpoint existed) and the last one's (now).

    python -m benchmarks.preemption_loss [--deadline-s 20] [--steps 600]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

LAST_LINE = re.compile(r"checkpoint at step (\d+); last checkpoint at step (\d+), ([\d.]+) s before the deadline$")


def measure(cluster, shards: str, out: Path, deadline_s: int, steps: int) -> dict:
    import mlflow
    import ray

    from pipelines.cache import cache_features
    from tests.integration.multinode_script import (
        AFTER_DEADLINE_S,
        drain_as_the_pods_prestop_hook_does,
        start_training,
        starts_of,
        steps_logged,
        wait_for,
    )

    worker_node = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    cache, run = out / "cache", out / "run"
    assert cache_features.main(["--shards", shards, "--out", str(cache), "--preset", "tiny"]) == 0
    outcome: dict = {}
    thread: threading.Thread = start_training(cache, run, outcome, "--steps", str(steps), "--checkpoint-every", "100000",
                                              "--max-failures", "0", "--log-every", "1")
    wait_for(lambda: len(starts_of(run)) >= 2, thread, "its workers' start")  # placed on the two nodes there are
    cluster.add_node(num_cpus=2)  # the autoscaler's replacement, started before: on a cloud, another machine's cores
    cluster.wait_for_nodes()
    wait_for(lambda: steps_logged(run) >= 20, thread, "its 20th step")
    drain_as_the_pods_prestop_hook_does(cluster, worker_node.node_id, deadline_s)
    deadline = time.time() + deadline_s  # ray drain-node counted from a moment earlier: the latest it can be
    time.sleep(max(0.0, deadline + AFTER_DEADLINE_S - time.time()))
    cluster.remove_node(worker_node)  # the cloud takes the node after its deadline, as the pod's hook waits
    thread.join(timeout=1200)
    if outcome.get("rc") != 0:
        raise SystemExit(f"training failed: {outcome.get('error')}")

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    run_id = (run / "mlflow_run_id.txt").read_text().strip()
    history = client.get_metric_history(run_id, "loss")
    before_deadline = [m for m in history if m.timestamp <= deadline * 1000]
    trained = max(m.step for m in before_deadline)
    first, last = min(before_deadline, key=lambda m: m.step), max(before_deadline, key=lambda m: m.step)
    seconds_per_step = (last.timestamp - first.timestamp) / 1000 / max(1, last.step - first.step)
    found = LAST_LINE.search(client.get_run(run_id).data.tags["preemption.last"])
    if found is None:
        raise SystemExit("no last checkpoint before the deadline: " + client.get_run(run_id).data.tags["preemption.last"])
    notice_step, last_step, margin_s = int(found[1]), int(found[2]), float(found[3])
    resumed = {int(line.split("step=")[1]) for line in starts_of(run)[2:]}
    return {"deadline_s": deadline_s, "steps_before_deadline": trained, "seconds_per_step": round(seconds_per_step, 4),
            "notice_step": notice_step, "last_step": last_step, "last_checkpoint_s_before_deadline": margin_s,
            "resumed_from": sorted(resumed),
            "lost_from_notice_checkpoint": trained - notice_step,
            "lost_from_last_checkpoint": trained - last_step,
            "lost_s_from_notice_checkpoint": round((trained - notice_step) * seconds_per_step, 1),
            "lost_s_from_last_checkpoint": round((trained - last_step) * seconds_per_step, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deadline-s", type=int, default=20, help="the drain's deadline (the preStop hook's 20 s)")
    parser.add_argument("--steps", type=int, default=600, help="long enough to outlast the drain")
    args = parser.parse_args(argv)

    os.environ["RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S"] = "1"  # as the manifests set
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    from ray.cluster_utils import Cluster

    from ops.data.sample_data import SampleDataConfig, write_split

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        os.environ["VLJEPA_HOME"] = str(out / "home")
        # the integration tests' sample data: real H.264 / JPEG / PNG shards
        write_split(str(out / "data"), "train", SampleDataConfig(clips_per_scene=1, images_per_scene=1, vqa_per_scene=1,
                                                                 samples_per_shard=24))
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
        try:
            result = measure(cluster, str(out / "data" / "train"), out, args.deadline_s, args.steps)
        finally:
            ray.shutdown()
            cluster.shutdown()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
