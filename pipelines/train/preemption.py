"""Spot and preemptible nodes: a checkpoint taken the moment the cluster announces that a node of
the run is about to be reclaimed, and a last one just before its deadline, so the restart that
follows loses a few seconds of training, not the steps since the last periodic checkpoint.

The notice reaches Ray as a node drain with reason PREEMPTION and a deadline: the preStop hook of
infra/k8s's training worker pods sends it (`ray drain-node`) when a reclaimed node's pods are
stopped, Ray's autoscaler v2 for the nodes it terminates. Ray Train watches the drains of its workers'
nodes (every RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S, 5 s by default) and lets every worker read the
notice through `ray.train.get_preemption_info()`, a collective that every rank must call equally
often. On a notice the loop reports a checkpoint at once and goes on training: Ray Train keeps the
worker group running until the deadline (workers that returned would end the run as finished,
workers that raised would count as failed). At the deadline it restarts the worker group on the
nodes that remain, from the latest registered checkpoint. The restart is counted against
`--max-preemptions`, not `--max-failures`, which stays for real failures. Without the notice, a
restart goes back to the last periodic checkpoint, up to `--checkpoint-every` steps of the whole
cluster's work.

The last checkpoint before the deadline: the steps trained between the notice's checkpoint and the
deadline would be lost (20 s with infra/k8s's preStop hook, up to minutes where a cloud warns
earlier). When the notice gives a deadline, the loop checkpoints once more as late as it can: at
the first step after the notice, rank 0 counts how many steps fit before the deadline less the time
the notice's checkpoint took and `REGISTRATION_S` (Ray Train registers a checkpoint at its next poll
of the workers, RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s by default, and restores only registered
ones), and broadcasts half of it; at that step it looks again (the slower of the step time since
and before the notice), until fewer than two steps fit: then every rank checkpoints. Fewer than two
at the first look: the notice's checkpoint stays the last.

When to ask: each question is a round trip to Ray Train's synchronization actor (2 ms with one
worker, 6 ms with two, on 2 CPU cores), a tax at every step of a fast loop, yet asking every N
steps gives too little notice when steps are slow. So the loop asks about every `interval_s`
seconds: at each question rank 0 measures its time per step since the last one and broadcasts
how many steps to wait for the next, so that every rank asks at the same steps.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

MAX_STEPS_BETWEEN_CHECKS = 1000  # a step time measured near zero must not put the next question far off
# A checkpoint finished this long before the deadline is registered before Ray Train tears the
# workers down: its poll interval, and a second for a busy controller
REGISTRATION_S = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")) + 1.0


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

    After each optimiser step, `notice(step)`: a notice naming nodes not announced before (save a
    checkpoint now), else None; then `last_call(step)`: the notice again at the step whose checkpoint
    is the last that can be registered before its deadline, else None. `checkpointed(seconds)`
    after each checkpoint: how long it took. `interval_s` <= 0 never asks."""

    interval_s: float
    start_step: int = 0
    ask: Callable[[], object] = ask_ray_train
    broadcast: Callable[[int], int] = broadcast_from_rank_zero
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time  # deadlines are wall-clock times
    _asked_step: int = field(init=False)
    _asked_at: float = field(init=False)
    _next_step: int = field(init=False)
    _seconds_per_step: float = field(init=False, default=0.0)
    _announced: set = field(init=False, default_factory=set)
    _checkpoint_s: float = field(init=False, default=0.0)
    _pending: object = field(init=False, default=None)  # a notice whose last checkpoint is not yet planned
    _last_step: int | None = field(init=False, default=None)
    _last_info: object = field(init=False, default=None)
    _planned_step: int = field(init=False, default=0)
    _planned_at: float = field(init=False, default=0.0)
    noticed_step: int | None = field(init=False, default=None)  # the latest notice's checkpoint
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
        self._seconds_per_step = (now - self._asked_at) / max(1, step - self._asked_step)
        gap = max(1, min(MAX_STEPS_BETWEEN_CHECKS, round(self.interval_s / max(self._seconds_per_step, 1e-9))))
        gap = self.broadcast(gap)  # rank 0's measurement: the ranks' clocks differ, their steps must not
        self._asked_step, self._asked_at, self._next_step = step, now, step + gap
        if info is None:
            return None
        nodes = set(info.preempted_node_ids)
        if nodes <= self._announced:
            return None  # this preemption was checkpointed for already
        self._announced |= nodes
        self.noticed_step = step
        # a later notice plans again, from its own (the merged, earliest) deadline
        self._pending, self._last_step, self._last_info = (info if info.deadline_ms else None), None, None
        return info

    def checkpointed(self, seconds: float) -> None:
        self._checkpoint_s = max(self._checkpoint_s, seconds)  # the slowest yet: a late last one is lost

    def last_call(self, step: int):
        if self._pending is not None and self.noticed_step is not None and step > self.noticed_step:
            self._plan_first(step)
            return None
        if self._last_step is None or step < self._last_step:
            return None
        # the slower of the step times since the last look and before the notice: steps that sped up
        # since only cost another look, steps that slowed down would make the checkpoint late
        since = (self.clock() - self._planned_at) / max(1, step - self._planned_step)
        wait = self._steps_to_wait(step, self._last_info.deadline_ms, max(since, self._seconds_per_step))
        if wait >= 1:  # two steps or more still fit: look again halfway
            self._last_step = step + wait
            return None
        info, self._last_step, self._last_info = self._last_info, None, None
        return info

    def _plan_first(self, step: int) -> None:
        """At the first step after the notice's checkpoint (its time known), from the step time the
        questions measured (the step since includes that checkpoint)."""
        info, self._pending = self._pending, None
        wait = self._steps_to_wait(step, info.deadline_ms, self._seconds_per_step)
        if wait >= 1:  # else the notice's checkpoint, a step ago, is as late as a checkpoint can be
            self._last_step, self._last_info = step + wait, info

    def _steps_to_wait(self, step: int, deadline_ms: int, seconds_per_step: float) -> int:
        """Half the steps that still fit before the last checkpoint must start (one collective: rank
        0's count): halving at each look, with a fresh step time, lands within two steps of the
        latest start however the step time drifts, in a few collectives."""
        seconds_left = deadline_ms / 1000 - self.wall_clock() - self._checkpoint_s - REGISTRATION_S
        fitting = math.floor(seconds_left / max(seconds_per_step, 1e-9)) if seconds_left > 0 else 0
        self._planned_step, self._planned_at = step, self.clock()
        return self.broadcast(min(fitting // 2, 10 ** 9))


def describe(info, step: int) -> str:
    """One line for the log and MLflow: which nodes and ranks go, when, and the checkpoint's step."""
    nodes = ", ".join(f"{node[:12]} (ranks {ranks})" for node, ranks in sorted(info.preempted_node_to_ranks.items()))
    if info.deadline_ms:
        deadline = datetime.fromtimestamp(info.deadline_ms / 1000, tz=timezone.utc).strftime("%H:%M:%S UTC")
        when = f"reclaimed at {deadline}"
    else:
        when = "reclaimed soon (no deadline given)"
    return f"preemption notice: node {nodes} {when}; checkpoint at step {step}"


def describe_last(info, noticed_step: int, step: int, seconds_left: float) -> str:
    """The notice's line, then the last checkpoint before its deadline: where the restart resumes."""
    return f"{describe(info, noticed_step)}; last checkpoint at step {step}, {seconds_left:.1f} s before the deadline"
