"""Architecture configs of the paper's three checkpoints, mirrored from their `config.json`.

They let `vljepa summary --preset paper` build the full model on the meta device (shapes, no
weights) with no hub access. Loading weights always reads the checkpoint's own config instead.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, Gemma3TextConfig, LlamaConfig, PretrainedConfig, VJEPA2Config

from model.checkpoint_loading import loading

VJEPA2_VITL_FPC64_256 = "facebook/vjepa2-vitl-fpc64-256"
LLAMA_3_2_1B = "meta-llama/Llama-3.2-1B"
EMBEDDINGGEMMA_300M = "google/embeddinggemma-300m"


def _vjepa2_vitl_fpc64_256() -> VJEPA2Config:
    # ViT-L/16, 256px, tubelet 2; the HF checkpoint also carries the 12-layer JEPA predictor.
    return VJEPA2Config(
        patch_size=16, crop_size=256, frames_per_clip=64, tubelet_size=2, hidden_size=1024,
        num_attention_heads=16, num_hidden_layers=24, mlp_ratio=4.0, pred_hidden_size=384,
        pred_num_attention_heads=12, pred_num_hidden_layers=12,
    )


def _llama_3_2_1b() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
        rms_norm_eps=1e-5, bos_token_id=128000, eos_token_id=128001, tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
        },
    )


def _embeddinggemma_300m() -> Gemma3TextConfig:
    return Gemma3TextConfig(
        vocab_size=262144, hidden_size=768, intermediate_size=1152, num_hidden_layers=24,
        num_attention_heads=3, num_key_value_heads=1, head_dim=256, max_position_embeddings=2048,
        query_pre_attn_scalar=256, sliding_window=512, use_bidirectional_attention=True,
    )


KNOWN_ARCHITECTURES = {
    VJEPA2_VITL_FPC64_256: _vjepa2_vitl_fpc64_256,
    LLAMA_3_2_1B: _llama_3_2_1b,
    EMBEDDINGGEMMA_300M: _embeddinggemma_300m,
}


def architecture_config(checkpoint: str) -> PretrainedConfig:
    """The config of `checkpoint` without its weights: a local directory's own config.json,
    the mirror above for the paper's hub ids, else the hub's config.json."""
    if checkpoint in KNOWN_ARCHITECTURES and not Path(checkpoint).is_dir():
        return KNOWN_ARCHITECTURES[checkpoint]()
    with loading(checkpoint):
        return AutoConfig.from_pretrained(checkpoint)
