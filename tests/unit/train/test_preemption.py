"""When the training loops ask Ray Train for a preemption notice (pipelines/train/preemption.py): about
every `interval_s` seconds of training, at the steps rank 0 chooses, and a checkpoint once per
notice, and the last checkpoint before the notice's deadline. The whole path (a real drain on a real
multi-node cluster, the checkpoints, the restart from the last) is tests/integration/train/test_multinode.py;
here, the cadence, the once-per-notice rule and the timing of the last checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from ray.train import PreemptionInfo

from pipelines.train.preemption import (
    MAX_STEPS_BETWEEN_CHECKS,
    REGISTRATION_S,
    PreemptionWatch,
    describe,
    describe_last,
)

EPOCH = 1_796_374_000.0  # the wall clock at the start of a test's training


@dataclass
class Cluster:
    """What a rank sees: a simulated clock it advances by its step time (and a checkpoint's), the
    notice Ray Train holds, and rank 0's broadcast (None: this is rank 0, its own value goes out).
    Nothing is timed: the watch reads this clock, so the tests assert on steps it chose."""

    step_time: float
    notice: PreemptionInfo | None = None
    rank_zero_gaps: list[int] | None = None
    checkpoint_s: float = 0.0
    now: float = 0.0
    asked_at_steps: list[int] = field(default_factory=list)
    broadcast_values: list[int] = field(default_factory=list)
    last_calls: dict[int, tuple[PreemptionInfo, float]] = field(default_factory=dict)  # step: (notice, done at)

    def watch(self, interval_s: float, start_step: int = 0) -> PreemptionWatch:
        return PreemptionWatch(interval_s, start_step=start_step, ask=lambda: self.notice,
                               broadcast=self._broadcast, clock=lambda: self.now, wall_clock=lambda: EPOCH + self.now)

    def _broadcast(self, value: int) -> int:
        self.broadcast_values.append(value)
        return self.rank_zero_gaps.pop(0) if self.rank_zero_gaps is not None else value

    def train(self, watch: PreemptionWatch, first: int, last: int) -> dict[int, PreemptionInfo]:
        """The loops' order: a step, notice(), last_call(), and a checkpoint when either asks."""
        notices = {}
        for step in range(first, last + 1):
            self.now += self.step_time
            before = len(self.broadcast_values)
            found = watch.notice(step)
            if len(self.broadcast_values) > before:
                self.asked_at_steps.append(step)
            last_call = watch.last_call(step)
            if found is not None or last_call is not None:
                self.now += self.checkpoint_s
                watch.checkpointed(self.checkpoint_s)
            if found is not None:
                notices[step] = found
            if last_call is not None:
                self.last_calls[step] = (last_call, EPOCH + self.now)
        return notices

    def drain(self, *nodes: str, seconds: float | None) -> None:
        """A drain with a deadline `seconds` from now (None: none given)."""
        self.notice = _info(*nodes, deadline_ms=None if seconds is None else round((EPOCH + self.now + seconds) * 1000))


def _info(*nodes: str, deadline_ms: int | None = 1_796_374_039_535) -> PreemptionInfo:
    return PreemptionInfo(deadline_ms=deadline_ms, preempted_node_to_ranks={n: [i] for i, n in enumerate(nodes)})


def test_asks_about_every_interval_whatever_the_step_time():
    fast, slow = Cluster(step_time=0.01), Cluster(step_time=0.5)
    fast.train(fast.watch(interval_s=2.0), 1, 1000)
    slow.train(slow.watch(interval_s=2.0), 1, 40)
    # the first question comes after one step; then one every 2 s of training
    assert fast.asked_at_steps == [1, 201, 401, 601, 801] and slow.asked_at_steps == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]


def test_a_resumed_run_counts_its_steps_from_the_checkpoint():
    cluster = Cluster(step_time=0.5)
    cluster.train(cluster.watch(interval_s=2.0, start_step=120), 121, 130)
    assert cluster.asked_at_steps == [121, 125, 129]


def test_every_rank_asks_at_the_steps_rank_zero_chose():
    """Rank 1's steps look faster (its clock), but it follows rank 0's gaps: a collective needs
    every rank at the same steps, else the ranks deadlock."""
    rank_zero = Cluster(step_time=0.5)
    rank_zero.train(rank_zero.watch(interval_s=2.0), 1, 40)
    rank_one = Cluster(step_time=0.01, rank_zero_gaps=list(rank_zero.broadcast_values))
    rank_one.train(rank_one.watch(interval_s=2.0), 1, 40)
    assert rank_one.asked_at_steps == rank_zero.asked_at_steps
    assert rank_one.broadcast_values[1:] == [200] * (len(rank_one.asked_at_steps) - 1)  # what it would have chosen


def test_a_stalled_interval_does_not_stop_the_questions():
    cluster = Cluster(step_time=1e-7)
    cluster.train(cluster.watch(interval_s=2.0), 1, 3 * MAX_STEPS_BETWEEN_CHECKS)
    assert cluster.asked_at_steps == [1, 1 + MAX_STEPS_BETWEEN_CHECKS, 1 + 2 * MAX_STEPS_BETWEEN_CHECKS]


def test_a_notice_is_returned_once_then_again_for_another_node():
    cluster = Cluster(step_time=0.5)
    watch = cluster.watch(interval_s=2.0)
    assert cluster.train(watch, 1, 10) == {}
    cluster.notice = _info("node-a")
    first = cluster.train(watch, 11, 30)
    assert list(first) == [13] and first[13].preempted_node_ids == ["node-a"]  # the first question after it
    cluster.notice = _info("node-a", "node-b")  # Ray Train merges a second node's notice into the first
    second = cluster.train(watch, 31, 50)
    assert list(second) == [33] and second[33].preempted_node_ids == ["node-a", "node-b"]


def test_interval_zero_never_asks():
    cluster = Cluster(step_time=0.5, notice=_info("node-a"))
    assert cluster.train(cluster.watch(interval_s=0), 1, 100) == {} and cluster.asked_at_steps == []


def test_the_notice_is_described_for_the_log_and_mlflow():
    node = "3ebf5b6a2e898836a401df8f49762e9957fcb992f4cd7cceec5a9c65"
    assert describe(_info(node), 25) == ("preemption notice: node 3ebf5b6a2e89 (ranks [0]) reclaimed at "
                                         "08:47:19 UTC; checkpoint at step 25")
    assert describe(_info(node, deadline_ms=None), 7).endswith("reclaimed soon (no deadline given); checkpoint at step 7")


def test_the_last_checkpoint_is_the_latest_that_is_registered_before_the_deadline():
    """A 20 s notice, 0.5 s steps, 1 s checkpoints: the notice's checkpoint at the first question
    after the drain, then the last one within two steps of the latest whose checkpoint ends
    REGISTRATION_S before the deadline; nothing after it. A restart from it loses under two steps
    and the margin."""
    cluster = Cluster(step_time=0.5, checkpoint_s=1.0)
    watch = cluster.watch(interval_s=2.0)
    cluster.train(watch, 1, 10)
    cluster.drain("node-a", seconds=20)
    deadline = cluster.notice.deadline_ms / 1000
    collectives_before = len(cluster.broadcast_values)
    assert list(cluster.train(watch, 11, 80)) == [13]
    ((step, (info, done_at)),) = cluster.last_calls.items()
    assert info.preempted_node_ids == ["node-a"] and watch.noticed_step == 13
    assert done_at <= deadline - REGISTRATION_S < done_at + 2 * cluster.step_time
    assert step > 13 + 20 // 2  # more than half the notice's window trained and kept
    # the questions' gaps, and a handful of looks at the deadline: not one collective per step
    assert len(cluster.broadcast_values) - collectives_before <= len(cluster.asked_at_steps) + 6


def test_steps_slowing_after_the_notice_do_not_make_the_last_checkpoint_late():
    """The step time measured before the notice is 0.25 s; after it, steps take 0.5 s (say, the
    surviving nodes are busier). One plan from the old step time would start the checkpoint far too
    late to be registered; looking again at each halfway point keeps it in time."""
    cluster = Cluster(step_time=0.25, checkpoint_s=1.0)
    watch = cluster.watch(interval_s=2.0)
    cluster.train(watch, 1, 20)
    cluster.drain("node-a", seconds=20)
    deadline = cluster.notice.deadline_ms / 1000
    assert list(cluster.train(watch, 21, 25)) == [25]
    cluster.step_time = 0.5
    cluster.train(watch, 26, 120)
    ((_, (_, done_at)),) = cluster.last_calls.items()
    assert done_at <= deadline - REGISTRATION_S < done_at + 2 * cluster.step_time


def test_a_short_notice_keeps_only_the_notices_checkpoint():
    cluster = Cluster(step_time=0.5, checkpoint_s=1.0)
    watch = cluster.watch(interval_s=2.0)
    cluster.train(watch, 1, 10)
    cluster.drain("node-a", seconds=REGISTRATION_S + 2.0)  # used up by the notice's delay and checkpoint
    assert list(cluster.train(watch, 11, 40)) == [13] and cluster.last_calls == {}


def test_no_deadline_no_last_checkpoint_and_no_extra_collective():
    cluster = Cluster(step_time=0.5, checkpoint_s=1.0)
    watch = cluster.watch(interval_s=2.0)
    cluster.drain("node-a", seconds=None)
    assert list(cluster.train(watch, 1, 40)) == [1] and cluster.last_calls == {}
    assert len(cluster.broadcast_values) == len(cluster.asked_at_steps)  # only the questions' gaps


def test_every_rank_takes_the_last_checkpoint_at_rank_zeros_step():
    """Rank 1's clock runs fast and its checkpoints are quick: alone it would plan a later last
    checkpoint, but the count rank 0 broadcasts decides, so the report (a barrier) meets."""
    rank_zero = Cluster(step_time=0.5, checkpoint_s=1.0)
    rank_zero.drain("node-a", seconds=30)
    rank_zero.train(rank_zero.watch(interval_s=2.0), 1, 80)
    rank_one = Cluster(step_time=0.01, checkpoint_s=0.1, rank_zero_gaps=list(rank_zero.broadcast_values))
    rank_one.drain("node-a", seconds=30)
    rank_one.train(rank_one.watch(interval_s=2.0), 1, 80)
    assert list(rank_one.last_calls) == list(rank_zero.last_calls) and len(rank_zero.last_calls) == 1


def test_a_second_notice_plans_from_the_earlier_deadline():
    """Ray Train merges a second node's notice into the first, with the earliest deadline."""
    cluster = Cluster(step_time=0.5, checkpoint_s=1.0)
    watch = cluster.watch(interval_s=2.0)
    cluster.drain("node-a", seconds=60)
    cluster.train(watch, 1, 12)
    assert cluster.last_calls == {}  # planned, far ahead
    cluster.drain("node-a", "node-b", seconds=15)
    deadline = cluster.notice.deadline_ms / 1000
    (second,) = cluster.train(watch, 13, 200)  # at the next question
    ((step, (info, done_at)),) = cluster.last_calls.items()  # one: the first plan was replaced
    assert step > second
    assert info.preempted_node_ids == ["node-a", "node-b"] and done_at <= deadline - REGISTRATION_S


def test_the_last_checkpoint_is_described_for_the_log_and_mlflow():
    node = "3ebf5b6a2e898836a401df8f49762e9957fcb992f4cd7cceec5a9c65"
    assert describe_last(_info(node), 25, 52, 3.04) == (
        "preemption notice: node 3ebf5b6a2e89 (ranks [0]) reclaimed at 08:47:19 UTC; checkpoint at step 25; "
        "last checkpoint at step 52, 3.0 s before the deadline")
