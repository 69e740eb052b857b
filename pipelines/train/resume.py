"""What `--resume` may change in a run, and the refusal of everything else.

A run directory's train_config.json records the settings it was started with, and its MLflow run
logged them as params, which are write-once. A resume that silently took other settings would
train something else than the params say: another seed or batch size changes the data order and
the loss, another --storage finds no checkpoint and starts over inside the same MLflow run,
another --preset fails to load the checkpoint in every worker, --max-failures times over. So a
resume may change only how long and how the run goes on (RESUMABLE); any other difference is
refused before anything is written or started, each setting named with its two values.
"""

from __future__ import annotations

import json
from pathlib import Path

# how long the run goes on, on what resources, and how it reports: not what it learns
RESUMABLE = frozenset({
    "steps", "workers", "cpus_per_worker", "threads_per_worker", "placement_strategy", "checkpoint_every",
    "keep_checkpoints", "log_every", "max_failures", "max_preemptions", "preemption_check_s", "eval_cache",
    "eval_every", "eval_max_samples", "eval_text_triplets", "eval_triplet_fields", "num_beams",
    "registered_model",
})
# filled in at each start (resolved paths, the driver's MLflow servers, the run's own MLflow id)
DERIVED = frozenset({
    "out", "tracking_uri", "mlflow_run_id", "init_model_tracking_uri", "init_model_registry_uri",
    "model_tracking_uri", "model_registry_uri",
})
MAIN_RUN_KIND = "vljepa"  # what a run directory of `vljepa train` records (no run_kind field)
VERBS = {MAIN_RUN_KIND: "vljepa train", "y-decoder": "vljepa train-decoder"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _differences(recorded: dict, now: dict) -> dict[str, tuple]:
    """{name: (recorded, now)} of the settings that differ; settings only one side knows (a config
    from an older version) and DERIVED ones are not compared."""
    return {name: (recorded[name], now[name]) for name in sorted(set(recorded) & set(now) - DERIVED)
            if recorded[name] != now[name]}


def _described(differences: dict[str, tuple]) -> tuple[list[str], list[str]]:
    refused, allowed = [], []
    for name, (before, after) in differences.items():
        (allowed if name in RESUMABLE else refused).append(f"{_flag(name)} {before!r} (now {after!r})")
    return refused, allowed


def changed_settings(recorded: dict, now: dict) -> tuple[list[str], list[str]]:
    """(refused, allowed): "--name RECORDED (now NOW)" for each setting that differs."""
    return _described(_differences(recorded, now))


def check_resumable(run_dir: Path, now: dict) -> dict[str, str]:
    """Refuse (SystemExit) to resume the run in `run_dir` with settings `now` (a config's to_dict())
    that change what it trains; print the allowed changes and return them as MLflow tags,
    {"resumed.NAME": NOW}: the params keep the first values (write-once), the tags the latest."""
    recorded = json.loads((run_dir / "train_config.json").read_text())
    now = json.loads(json.dumps(now))  # as it would be recorded: tuples as lists
    kinds = recorded.get("run_kind", MAIN_RUN_KIND), now.get("run_kind", MAIN_RUN_KIND)
    if kinds[0] != kinds[1]:
        raise SystemExit(f"{run_dir} holds a {kinds[0]} run: `{VERBS.get(kinds[0], kinds[0])} --resume` continues "
                         f"it, not `{VERBS.get(kinds[1], kinds[1])}`; choose another --out")
    differences = _differences(recorded, now)
    refused, allowed = _described(differences)
    if refused:
        raise SystemExit(f"{run_dir} was started with other settings: {'; '.join(refused)}. --resume continues a "
                         "run as it was started: it may change how long and how it runs (--steps, --workers, CPUs, "
                         "placement, checkpoint / log / eval cadence, --eval-cache, --max-failures, preemptions, "
                         "--registered-model), not what it trains; choose another --out for these settings")
    if allowed:
        print(f"--resume: continuing {run_dir} with {'; '.join(allowed)}")
    return {f"resumed.{name}": str(after) for name, (_, after) in differences.items()}  # all RESUMABLE here
