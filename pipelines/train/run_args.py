"""The command-line options of a Ray Train run that `vljepa train` and `vljepa train-decoder` share:
how the data streams, where the workers go, how they checkpoint and recover, and which cluster.

Types and defaults as `vljepa train` had them; the configs' validate() checks the ranges.
One definition, so the two verbs cannot drift apart: before it, train-decoder's config had
placement_strategy, threads_per_worker and epochs_per_pass fields that no option could set, so a
decoder run could not SPREAD its workers over nodes as a main run can.
"""

from __future__ import annotations

import argparse

from pipelines.cli.types import int_at_least, non_negative_float, non_negative_int, positive_float, positive_int

PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_SPREAD")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """Options of the schedule group: how the cache streams."""
    parser.add_argument("--epochs-per-pass", type=int, default=1,
                        help="epochs one Ray Data execution streams (see pipelines/train/data.py)")


def add_cluster_args(parser: argparse.ArgumentParser, checkpoint_every: int) -> None:
    """The "scale and faults" group; `checkpoint_every`: this verb's default."""
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpus-per-worker", type=positive_float, default=None,
                        help="CPUs each worker reserves (default: 1, or less on a small CPU cluster so the "
                             "data pipeline keeps a CPU)")
    parser.add_argument("--threads-per-worker", type=non_negative_int, default=0,
                        help="CPU training: torch threads (0: cores / workers)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=checkpoint_every)
    parser.add_argument("--log-every", type=positive_int, default=10, help="steps between logged metrics")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="worker failures a run recovers from, each from its last checkpoint")
    parser.add_argument("--max-preemptions", type=int_at_least(-1), default=-1,
                        help="node preemptions (spot reclaims) a run recovers from, each from the last checkpoint "
                             "it takes before the notice's deadline; -1: no limit. Not counted in --max-failures")
    parser.add_argument("--preemption-check-s", type=non_negative_float, default=2.0,
                        help="how often the workers ask Ray Train for a preemption notice, in seconds of training "
                             "(0: never; a notice then costs the steps since the last checkpoint)")
    parser.add_argument("--storage", default=None,
                        help="checkpoint storage: s3://bucket/prefix or a shared path (multi-node); default RUN/ray")
    parser.add_argument("--placement-strategy", choices=PLACEMENT_STRATEGIES, default="PACK",
                        help="SPREAD: one worker per node where possible")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--address", default=None, help="Ray cluster (default: RAY_ADDRESS or local)")
    parser.add_argument("--verbose", action="store_true",
                        help="also Ray Data's progress bars of each epoch's dataset (default: rank 0's progress lines)")


def run_fields(args: argparse.Namespace) -> dict:
    """The config fields (TrainConfig, DecoderTrainConfig) the options above set."""
    return {"epochs_per_pass": args.epochs_per_pass, "workers": args.workers, "cpus_per_worker": args.cpus_per_worker,
            "threads_per_worker": args.threads_per_worker, "checkpoint_every": args.checkpoint_every,
            "log_every": args.log_every, "max_failures": args.max_failures,
            "max_preemptions": args.max_preemptions, "preemption_check_s": args.preemption_check_s, "storage": args.storage,
            "placement_strategy": args.placement_strategy}
