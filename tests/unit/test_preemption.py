"""When the training loops ask Ray Train for a preemption notice (pipelines/preemption.py): about
every `interval_s` seconds of training, at the steps rank 0 chooses, and a checkpoint once per
notice. The whole path (a real drain on a real multi-node cluster, the checkpoint, the restart from
it) is tests/integration/test_multinode.py; here, the cadence and the once-per-notice rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from ray.train import PreemptionInfo

from pipelines.preemption import MAX_STEPS_BETWEEN_CHECKS, PreemptionWatch, describe


@dataclass
class Cluster:
    """What a rank sees: a clock it advances by its step time, the notice Ray Train holds, and
    rank 0's broadcast (None: this is rank 0, its own value goes out)."""

    seconds_per_step: float
    notice: PreemptionInfo | None = None
    rank_zero_gaps: list[int] | None = None
    now: float = 0.0
    asked_at_steps: list[int] = field(default_factory=list)
    broadcast_values: list[int] = field(default_factory=list)

    def watch(self, interval_s: float, start_step: int = 0) -> PreemptionWatch:
        return PreemptionWatch(interval_s, start_step=start_step, ask=lambda: self.notice,
                               broadcast=self._broadcast, clock=lambda: self.now)

    def _broadcast(self, value: int) -> int:
        self.broadcast_values.append(value)
        return self.rank_zero_gaps.pop(0) if self.rank_zero_gaps is not None else value

    def train(self, watch: PreemptionWatch, first: int, last: int) -> dict[int, PreemptionInfo]:
        notices = {}
        for step in range(first, last + 1):
            self.now += self.seconds_per_step
            before = len(self.broadcast_values)
            found = watch.notice(step)
            if len(self.broadcast_values) > before:
                self.asked_at_steps.append(step)
            if found is not None:
                notices[step] = found
        return notices


def _info(*nodes: str, deadline_ms: int | None = 1_796_374_039_535) -> PreemptionInfo:
    return PreemptionInfo(deadline_ms=deadline_ms, preempted_node_to_ranks={n: [i] for i, n in enumerate(nodes)})


def test_asks_about_every_interval_whatever_the_step_time():
    fast, slow = Cluster(seconds_per_step=0.01), Cluster(seconds_per_step=0.5)
    fast.train(fast.watch(interval_s=2.0), 1, 1000)
    slow.train(slow.watch(interval_s=2.0), 1, 40)
    # the first question comes after one step; then one every 2 s of training
    assert fast.asked_at_steps == [1, 201, 401, 601, 801] and slow.asked_at_steps == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]


def test_a_resumed_run_counts_its_steps_from_the_checkpoint():
    cluster = Cluster(seconds_per_step=0.5)
    cluster.train(cluster.watch(interval_s=2.0, start_step=120), 121, 130)
    assert cluster.asked_at_steps == [121, 125, 129]


def test_every_rank_asks_at_the_steps_rank_zero_chose():
    """Rank 1's steps look faster (its clock), but it follows rank 0's gaps: a collective needs
    every rank at the same steps, else the ranks deadlock."""
    rank_zero = Cluster(seconds_per_step=0.5)
    rank_zero.train(rank_zero.watch(interval_s=2.0), 1, 40)
    rank_one = Cluster(seconds_per_step=0.01, rank_zero_gaps=list(rank_zero.broadcast_values))
    rank_one.train(rank_one.watch(interval_s=2.0), 1, 40)
    assert rank_one.asked_at_steps == rank_zero.asked_at_steps
    assert rank_one.broadcast_values[1:] == [200] * (len(rank_one.asked_at_steps) - 1)  # what it would have chosen


def test_a_stalled_interval_does_not_stop_the_questions():
    cluster = Cluster(seconds_per_step=1e-7)
    cluster.train(cluster.watch(interval_s=2.0), 1, 3 * MAX_STEPS_BETWEEN_CHECKS)
    assert cluster.asked_at_steps == [1, 1 + MAX_STEPS_BETWEEN_CHECKS, 1 + 2 * MAX_STEPS_BETWEEN_CHECKS]


def test_a_notice_is_returned_once_then_again_for_another_node():
    cluster = Cluster(seconds_per_step=0.5)
    watch = cluster.watch(interval_s=2.0)
    assert cluster.train(watch, 1, 10) == {}
    cluster.notice = _info("node-a")
    first = cluster.train(watch, 11, 30)
    assert list(first) == [13] and first[13].preempted_node_ids == ["node-a"]  # the first question after it
    cluster.notice = _info("node-a", "node-b")  # Ray Train merges a second node's notice into the first
    second = cluster.train(watch, 31, 50)
    assert list(second) == [33] and second[33].preempted_node_ids == ["node-a", "node-b"]


def test_interval_zero_never_asks():
    cluster = Cluster(seconds_per_step=0.5, notice=_info("node-a"))
    assert cluster.train(cluster.watch(interval_s=0), 1, 100) == {} and cluster.asked_at_steps == []


def test_the_notice_is_described_for_the_log_and_mlflow():
    node = "3ebf5b6a2e898836a401df8f49762e9957fcb992f4cd7cceec5a9c65"
    assert describe(_info(node), 25) == ("preemption notice: node 3ebf5b6a2e89 (ranks [0]) reclaimed at "
                                         "08:47:19 UTC; checkpoint at step 25")
    assert describe(_info(node, deadline_ms=None), 7).endswith("reclaimed soon (no deadline given); checkpoint at step 7")
