"""Presets: the paper's model and its offline siblings (same classes, tiny or bundled weights).

    paper   V-JEPA 2 ViT-L (frozen) + Llama-3.2-1B layers 8..15 + EmbeddingGemma-300M, 1536-d.
            Needs a hub token (Llama is gated) and, to train, GPUs.
    tiny    random-init tiny VJEPA2 / Llama / Gemma3-text checkpoints: tests, fully offline.
    minilm  tiny vision side + the real pretrained all-MiniLM-L6-v2 as y-encoder: real text
            semantics offline; the default of `make demo`.
    paper-random
            the paper's architecture and sizes with random weights (and MiniLM's tokenizer):
            paper-scale compute and memory offline, for throughput measurements where the hub is
            out of reach. Learns nothing useful without training; ~6 GB of checkpoints, written once.
"""

from __future__ import annotations

from pathlib import Path

from model.config import PredictorConfig, VLJepaConfig, XEncoderConfig, YEncoderConfig
from model.hub_configs import EMBEDDINGGEMMA_300M, LLAMA_3_2_1B, VJEPA2_VITL_FPC64_256
from model.tiny_checkpoints import ensure_paper_shaped_checkpoints, ensure_tiny_checkpoints, minilm_dir
from model.y_decoder import YDecoderConfig


def paper() -> VLJepaConfig:
    return VLJepaConfig(
        name="paper",
        x_encoder=XEncoderConfig(checkpoint=VJEPA2_VITL_FPC64_256, image_size=256, num_frames=8),
        predictor=PredictorConfig(checkpoint=LLAMA_3_2_1B, layer_start=8, num_layers=8,
                                  max_query_tokens=512),
        y_encoder=YEncoderConfig(checkpoint=EMBEDDINGGEMMA_300M, max_tokens=512),
        embed_dim=1536,
    )


def tiny(checkpoints_dir: Path | None = None) -> VLJepaConfig:
    paths = ensure_tiny_checkpoints(checkpoints_dir)
    return VLJepaConfig(
        name="tiny",
        x_encoder=XEncoderConfig(checkpoint=str(paths.vjepa2), image_size=64, num_frames=8),
        predictor=PredictorConfig(checkpoint=str(paths.llama), layer_start=2, num_layers=2,
                                  max_query_tokens=512),
        y_encoder=YEncoderConfig(checkpoint=str(paths.gemma3), max_tokens=512),
        embed_dim=64,
    )


def minilm(checkpoints_dir: Path | None = None) -> VLJepaConfig:
    paths = ensure_tiny_checkpoints(checkpoints_dir)
    return VLJepaConfig(
        name="minilm",
        x_encoder=XEncoderConfig(checkpoint=str(paths.vjepa2), image_size=64, num_frames=8),
        predictor=PredictorConfig(checkpoint=str(paths.llama), layer_start=2, num_layers=2,
                                  max_query_tokens=512),
        # MiniLM was trained with 256-token inputs (512 positions); 256 keeps it in distribution.
        y_encoder=YEncoderConfig(checkpoint=str(minilm_dir()), max_tokens=256),
        embed_dim=384,  # MiniLM's width: the isometric head keeps its geometry exactly
    )


def paper_random(checkpoints_dir: Path | None = None) -> VLJepaConfig:
    paths = ensure_paper_shaped_checkpoints(checkpoints_dir)
    real = paper()
    return VLJepaConfig(
        name="paper-random",
        x_encoder=XEncoderConfig(checkpoint=str(paths.vjepa2), image_size=real.x_encoder.image_size,
                                 num_frames=real.x_encoder.num_frames),
        predictor=PredictorConfig(checkpoint=str(paths.llama), layer_start=real.predictor.layer_start,
                                  num_layers=real.predictor.num_layers,
                                  max_query_tokens=real.predictor.max_query_tokens),
        y_encoder=YEncoderConfig(checkpoint=str(paths.gemma3), max_tokens=real.y_encoder.max_tokens),
        embed_dim=real.embed_dim,
    )


PRESETS = {"paper": paper, "tiny": tiny, "minilm": minilm, "paper-random": paper_random}


def get_preset(name: str, checkpoints_dir: Path | None = None) -> VLJepaConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if name == "paper":
        return paper()
    return PRESETS[name](checkpoints_dir)


def y_decoder_preset(model_config: VLJepaConfig, checkpoints_dir: Path | None = None) -> YDecoderConfig:
    """The Y-decoder for a model: its LM starts from a checkpoint of the predictor's family.

    paper: the first 4 layers of Llama-3.2-1B (a light decoder next to the 1.6B model; its
    tokenizer and LM head come with it); paper-random: the same from its random Llama. Offline
    presets: the tiny Llama checkpoint, all layers.
    """
    if model_config.name in ("paper", "paper-random"):
        checkpoint = LLAMA_3_2_1B if model_config.name == "paper" else str(
            ensure_paper_shaped_checkpoints(checkpoints_dir).llama)
        return YDecoderConfig(checkpoint=checkpoint, embed_dim=model_config.embed_dim, num_layers=4,
                              mapper_hidden=2048, max_tokens=64)
    paths = ensure_tiny_checkpoints(checkpoints_dir)
    return YDecoderConfig(checkpoint=str(paths.llama), embed_dim=model_config.embed_dim)
