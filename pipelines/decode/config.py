"""Typed config of one Y-decoder training run (`vljepa train-decoder`).

    mode "text"       text-only: the y-encoder's S_Y of the cache's captions, plus noise (default)
    mode "predicted"  fine-tune: the predictor's Ŝ_Y of the cached clips (captioning prompt), plus noise;
                      start it from a text-only run's decoder with --init-decoder. --text-mix F keeps
                      a fraction F of each batch on the captions' S_Y, so the fine-tune adapts to
                      predictions without forgetting how to read the embeddings of unseen captions
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipelines.train.config import cache_list, require_distinct_caches

MODES = ("text", "predicted")
RUN_KIND = "y-decoder"  # marks a run directory's train_config.json as a decoder run


@dataclass(kw_only=True)
class DecoderTrainConfig:
    model: str  # the exported VL-JEPA model whose embeddings the decoder reads: a directory or an MLflow URI
    # the MLflow server and registry an MLflow `model` URI resolves against: the driver's, so that
    # workers on other nodes (where the driver's download does not exist) fetch the same model themselves
    model_tracking_uri: str | None = None
    model_registry_uri: str | None = None
    cache: list[str]  # its captions (and, for mode "predicted", cached S_V): one or more caches, one dataset
    cache_weights: list[float] | None = None  # each cache's share of an epoch (normalised); None: by size
    out: str
    run_kind: str = RUN_KIND
    mode: str = "text"
    init_decoder: str | None = None  # a decoder (or a model directory holding one) to continue from
    decoder_checkpoint: str | None = None  # the LM to start from; None: the model preset's default
    prefix_length: int = 4
    noise_norm: float = 0.3
    text_mix: float = 0.0  # mode "predicted": fraction of rows trained on S_Y instead of Ŝ_Y
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    workers: int = 1
    threads_per_worker: int = 0
    cpus_per_worker: float | None = None
    shuffle_buffer: int = 256
    epochs_per_pass: int = 1  # epochs one Ray Data execution streams (pipelines.train.data)
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    eval_cache: str | None = None
    eval_max_samples: int = 200
    num_beams: int = 1
    max_failures: int = 2
    max_preemptions: int = -1  # node preemptions recovered from; -1: no limit (pipelines/train/preemption.py)
    preemption_check_s: float = 2.0  # seconds of training between questions for a notice; 0: never
    storage: str | None = None  # checkpoints: s3://... or a shared path; None: RUN/ray
    placement_strategy: str = "PACK"  # SPREAD puts the workers on different nodes
    tracking_uri: str | None = None
    experiment: str = "vljepa-decoder"
    mlflow_run_id: str | None = None
    registered_model: str | None = "vljepa-captioner"

    def __post_init__(self) -> None:
        self.cache = cache_list(self.cache)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def caches(self) -> list[str]:
        """Every feature cache the run reads."""
        return [url for url in (*self.cache, self.eval_cache) if url]

    def feature_caches(self) -> list[str]:
        """The caches whose S_V the run reads with the model: the training cache only when it
        decodes predictions (text mode reads captions), the eval cache always (CIDEr from Ŝ_Y)."""
        return [url for url in (*(self.cache if self.mode == "predicted" else ()), self.eval_cache) if url]

    @classmethod
    def from_dict(cls, data: dict) -> "DecoderTrainConfig":
        return cls(**data)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.steps < 1 or self.batch_size < 1 or self.workers < 1:
            raise ValueError("steps, batch size and workers must be >= 1")
        if self.epochs_per_pass < 1:
            raise ValueError("epochs per pass must be >= 1")
        if self.noise_norm < 0:
            raise ValueError("--noise-norm must be >= 0")
        if not 0.0 <= self.text_mix <= 1.0:
            raise ValueError(f"--text-mix must be in [0, 1], got {self.text_mix}")
        if self.text_mix and self.mode != "predicted":
            raise ValueError("--text-mix mixes S_Y into a fine-tune on predictions: it needs --mode predicted")
        require_distinct_caches(self.cache, self.cache_weights)
