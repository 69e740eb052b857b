"""Spot and preemptible nodes: a checkpoint taken the moment the cluster announces that a node of
the run is about to be reclaimed, so the restart that follows loses no steps.

The notice reaches Ray as a node drain with reason PREEMPTION and a deadline: the preStop hook of
infra/k8s's training worker pods sends it (`ray drain-node`) when a reclaimed node's pods are
stopped, Ray's autoscaler v2 for the nodes it terminates. Ray Train watches the drains of its workers'
nodes (every RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S, 5 s by default) and lets every worker read the
notice through `ray.train.get_preemption_info()`, a collective that every rank must call equally
often. On a notice the loop reports a checkpoint at once and goes on training. At the deadline
Ray Train restarts the worker group on the nodes that remain, from the latest checkpoint: that
one. The restart is counted against `--max-preemptions`, not `--max-failures`, which stays for
real failures. Without the notice, a restart goes back to the last periodic checkpoint, up to
`--checkpoint-every` steps of the whole cluster's work.

When to ask: each question is a round trip to Ray Train's synchronization actor (2 ms with one
worker, 6 ms with two, on 2 CPU cores), a tax at every step of a fast loop, yet asking every N
steps gives too little notice when steps are slow. So the loop asks about every `interval_s`
seconds: at each question rank 0 measures its time per step since the last one and broadcasts
how many steps to wait for the next, so that every rank asks at the same steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

MAX_STEPS_BETWEEN_CHECKS = 1000  # a step time measured near zero must not put the next question far off


def ask_ray_train():
    """The run's preemption notice (ray.train.PreemptionInfo) or None; a collective."""
    import ray.train
    return ray.train.get_preemption_info()


def broadcast_from_rank_zero(value: int) -> int:
    from ray.train.collective import broadcast_from_rank_zero as broadcast
    return broadcast(value)


@dataclass
class PreemptionWatch:
    """Asks at the same steps on every rank whether a node of the run is being preempted.

    `notice(step)` after each optimiser step: a notice naming nodes not announced before (save a
    checkpoint now), else None. `interval_s` <= 0 never asks."""

    interval_s: float
    start_step: int = 0
    ask: Callable[[], object] = ask_ray_train
    broadcast: Callable[[int], int] = broadcast_from_rank_zero
    clock: Callable[[], float] = time.monotonic
    _asked_step: int = field(init=False)
    _asked_at: float = field(init=False)
    _next_step: int = field(init=False)
    _announced: set = field(init=False, default_factory=set)
    questions: int = field(init=False, default=0)  # asked so far (benchmarks/preemption_check.py)

    def __post_init__(self) -> None:
        self._asked_step, self._asked_at = self.start_step, self.clock()
        self._next_step = self.start_step + 1

    def notice(self, step: int):
        if self.interval_s <= 0 or step < self._next_step:
            return None
        info = self.ask()
        self.questions += 1
        now = self.clock()
        seconds_per_step = (now - self._asked_at) / max(1, step - self._asked_step)
        gap = max(1, min(MAX_STEPS_BETWEEN_CHECKS, round(self.interval_s / max(seconds_per_step, 1e-9))))
        gap = self.broadcast(gap)  # rank 0's measurement: the ranks' clocks differ, their steps must not
        self._asked_step, self._asked_at, self._next_step = step, now, step + gap
        if info is None:
            return None
        nodes = set(info.preempted_node_ids)
        if nodes <= self._announced:
            return None  # this preemption was checkpointed for already
        self._announced |= nodes
        return info


def describe(info, step: int) -> str:
    """One line for the log and MLflow: which nodes and ranks go, when, and the checkpoint's step."""
    nodes = ", ".join(f"{node[:12]} (ranks {ranks})" for node, ranks in sorted(info.preempted_node_to_ranks.items()))
    if info.deadline_ms:
        deadline = datetime.fromtimestamp(info.deadline_ms / 1000, tz=timezone.utc).strftime("%H:%M:%S UTC")
        when = f"reclaimed at {deadline}"
    else:
        when = "reclaimed soon (no deadline given)"
    return f"preemption notice: node {nodes} {when}; checkpoint at step {step}"
