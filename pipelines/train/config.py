"""Typed training configs: the stages of paper §3.2 and one run's full settings.

    pretrain-image   1 frame, query-free, image-caption rows       warmup, then constant lr
    pretrain-video   clips (8 then 32 frames: one cache each), query-free, video captions
    sft              query-conditioned: VQA / classification rows with their question, captioning
                     rows with the captioning prompt, plus a replay share of pretraining rows
                     (query-free) mixed by weight; warmup, then cosine annealing
Each stage can start from a previous stage's exported model (`init_model`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

CAPTION_PROMPT = "Describe what happens in the video."
STATE_FILE = "state.pt"  # inside every Ray Train checkpoint directory


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    name: str
    media_kinds: tuple[str, ...]  # which cached rows train this stage
    tasks: tuple[str, ...]
    use_query: bool
    caption_prompt: str  # the query captioning rows get ("" = none)
    schedule: str  # "constant" (after warmup) or "cosine"
    default_lr: float


STAGES = {
    "pretrain-image": StageSpec(name="pretrain-image", media_kinds=("image",), tasks=("caption",), use_query=False,
                                caption_prompt="", schedule="constant", default_lr=5e-5),
    "pretrain-video": StageSpec(name="pretrain-video", media_kinds=("video",), tasks=("caption",), use_query=False,
                                caption_prompt="", schedule="constant", default_lr=5e-5),
    "sft": StageSpec(name="sft", media_kinds=("image", "video"), tasks=("caption", "vqa", "classification"),
                     use_query=True, caption_prompt=CAPTION_PROMPT, schedule="cosine", default_lr=5e-5),
}


def cache_list(cache: str | list[str] | tuple[str, ...]) -> list[str]:
    """A run's training caches as a list: one string is one cache."""
    return [cache] if isinstance(cache, str) else list(cache)


def require_distinct_caches(caches: list[str], weights: list[float] | None = None) -> None:
    """At least one cache, none named twice (it would be read twice per epoch: a silent doubling
    of its weight), and with --cache-weights one positive weight per cache."""
    named_twice = sorted({url for url in caches if caches.count(url) > 1})
    if not caches:
        raise ValueError("--cache: name at least one feature cache")
    if named_twice:
        raise ValueError(f"--cache names {', '.join(named_twice)} more than once: each cache is read once per epoch")
    if weights is not None and (len(weights) != len(caches) or not all(w > 0 for w in weights)):
        raise ValueError(f"--cache-weights needs one positive weight per --cache ({len(caches)}), got {weights}")


@dataclass(kw_only=True)
class TrainConfig:
    stage: str
    # one or more feature caches read as one dataset (e.g. one per source: Datacomp, YFCC); a single
    # string is taken as one (the Python API, and run directories written before lists)
    cache: list[str]
    # each cache's share of an epoch's rows (normalised); None: each by its size
    cache_weights: list[float] | None = None
    out: str  # the run directory: checkpoints, MLflow store (by default), exported model
    preset: str = "minilm"
    init_model: str | None = None  # an exported model to start from (a previous stage's): a directory or an MLflow URI
    # the MLflow server and registry an `init_model` URI resolves against: the driver's, so that
    # every worker (on any node) fetches the same model itself
    init_model_tracking_uri: str | None = None
    init_model_registry_uri: str | None = None
    steps: int = 200
    workers: int = 1
    # torch threads per worker; 0: the node's cores / workers. Ray starts 1-CPU workers with
    # OMP_NUM_THREADS=1, which on a CPU node would leave most cores idle.
    threads_per_worker: int = 0
    cpus_per_worker: float | None = None  # None: see pipelines.train.driver.worker_cpus
    batch_size: int = 32  # per worker; InfoNCE sees workers x batch_size samples
    grad_accum: int = 1
    lr: float | None = None  # None: the stage's default
    warmup_steps: int = 20
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    shuffle_buffer: int = 256
    epochs_per_pass: int = 1  # epochs one Ray Data execution streams (pipelines.train.data)
    log_every: int = 10
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    eval_cache: str | None = None
    eval_every: int = 0  # 0: only at the end
    eval_max_samples: int = 2000
    # the y-encoder's hard-negative text triplets (paper §4.6, ops/evaluate/text_triplets.py), scored at each evaluation
    eval_text_triplets: list[str] | None = None
    eval_triplet_fields: str = "p1,p2,n"
    replay_cache: str | None = None  # sft: pretraining rows to replay
    replay_weight: float = 0.0  # sft: target share of replayed rows
    max_failures: int = 2
    max_preemptions: int = -1  # node preemptions recovered from; -1: no limit (pipelines/train/preemption.py)
    preemption_check_s: float = 2.0  # seconds of training between questions for a notice; 0: never
    storage: str | None = None  # checkpoints: s3://... or a shared path; None: RUN/ray
    placement_strategy: str = "PACK"  # SPREAD puts the workers on different nodes
    tracking_uri: str | None = None  # None: sqlite under the run directory
    experiment: str = "vljepa"
    mlflow_run_id: str | None = None  # filled in by the driver
    registered_model: str | None = "vljepa"

    def __post_init__(self) -> None:
        self.cache = cache_list(self.cache)

    @property
    def spec(self) -> StageSpec:
        return STAGES[self.stage]

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.spec.default_lr

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def caches(self) -> list[str]:
        """Every feature cache the run reads."""
        return [url for url in (*self.cache, self.eval_cache, self.replay_cache) if url]

    def feature_caches(self) -> list[str]:
        """The caches whose S_V the run reads with the preset's model: all of them."""
        return self.caches()

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if self.steps < 1 or self.batch_size < 2 or self.workers < 1 or self.grad_accum < 1:
            raise ValueError("steps and workers must be >= 1, batch size >= 2 (InfoNCE needs negatives)")
        if self.epochs_per_pass < 1:
            raise ValueError("--epochs-per-pass must be >= 1")
        if self.replay_weight and not self.replay_cache:
            raise ValueError("--replay-weight needs --replay-cache")
        if not 0.0 <= self.replay_weight < 1.0:
            raise ValueError("--replay-weight must be in [0, 1)")
        require_distinct_caches(self.cache, self.cache_weights)
