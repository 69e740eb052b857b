"""Tokenisation for queries (predictor side) and targets (y-encoder side).

Both sides right-pad: the predictor puts query tokens after the visual tokens, and right padding
keeps every real token at the same rotary position however long the batch's longest query is.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from model.checkpoint_loading import loading


def load_tokenizer(checkpoint: str) -> PreTrainedTokenizerBase:
    with loading(checkpoint):
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        # Llama 3 ships no PAD token. Which id pads is irrelevant (PAD positions are masked out
        # of attention and pooling), so reuse EOS rather than grow the embedding matrix.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """texts -> (input_ids, attention_mask), each (B, L) with L <= max_tokens, right-padded."""
    encoded = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
    )
    return encoded["input_ids"], encoded["attention_mask"]


def count_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """Tokens `text` takes, special tokens included, before any truncation."""
    return len(tokenizer(text)["input_ids"])
