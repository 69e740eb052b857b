"""Run by test_multinode.py in its own process (a process drives one Ray cluster): a head and a
second node as separate raylets (ray.cluster_utils.Cluster), feature caching across them, then a
2-worker training spread over both nodes; mid-training the second node is killed, and a
replacement node joins later. Prints one JSON object on its last line."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster


def main(shards: str, out: str) -> int:
    # 2 CPUs per node: a training worker takes 1, Ray Data's read tasks the other
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        return run(cluster, shards, Path(out))
    finally:
        ray.shutdown()
        cluster.shutdown()


def run(cluster: Cluster, shards: str, out_dir: Path) -> int:
    from pipelines import cache_features, train

    second = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    assert cache_features.main(["--shards", shards, "--out", str(out_dir / "cache"), "--preset", "tiny"]) == 0

    run = out_dir / "run"
    outcome: dict = {}

    def training():
        outcome["rc"] = train.main([
            "--stage", "sft", "--cache", str(out_dir / "cache"), "--out", str(run), "--preset", "tiny",
            "--workers", "2", "--placement-strategy", "STRICT_SPREAD", "--cpus-per-worker", "1",
            "--steps", "30", "--batch-size", "4", "--warmup-steps", "1", "--checkpoint-every", "3",
            "--max-failures", "3", "--registered-model", ""])

    thread = threading.Thread(target=training)
    thread.start()
    checkpoints = run / "ray" / "train"
    deadline = time.monotonic() + 300
    while len(list(checkpoints.glob("checkpoint_*"))) < 2:  # mid-training: some checkpoints are written
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("training never reached its second checkpoint")
        time.sleep(0.5)
    killed_node = second.node_id
    cluster.remove_node(second)  # SIGKILL-like: the raylet and its workers go away
    killed_at = time.time()
    time.sleep(5)
    cluster.add_node(num_cpus=2)  # a replacement node joins, as an autoscaler would provide
    thread.join(timeout=600)
    starts = (run / "pids" / "starts.log").read_text().splitlines()
    result = json.dumps({"rc": outcome.get("rc"), "starts": starts, "killed_node": killed_node, "killed_at": killed_at,
                         "cached_shards": len(list((out_dir / "cache").glob("*.parquet")))})
    # a file, not stdout: Ray's raylet warnings reach stdout asynchronously, after any last line
    (out_dir / "result.json").write_text(result)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
