"""Y-Decoder: a shared-space embedding -> text (paper §2 "Selective Decoding", §4.4).

    Ŝ_Y (B, E) --normalise--> MLP --> prefix (B, P, d) --> causal LM over [prefix, BOS, tokens, EOS]

Design choices:
- A ClipCap-style prefix: an MLP maps the embedding to `prefix_length` vectors in the language
  model's input space and the LM reads them like a prompt. The LM stays a stock Hugging Face
  causal LM, loaded with `from_pretrained` and decoded with its `generate` (greedy or beam).
- Trained text-only (CapDec style): on the y-encoder's S_Y of captions with Gaussian noise added,
  so the decoder tolerates the predictor's Ŝ_Y, which lands near S_Y but not on it. It is not part
  of VL-JEPA's main training; an optional fine-tune on real Ŝ_Y closes the remaining gap.
- Only this module knows the decoder's token layout (BOS / EOS / padding), so training and
  decoding cannot disagree about it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from model.checkpoint_loading import loading
from model.tokenize import load_tokenizer


@dataclass(kw_only=True)
class YDecoderConfig:
    checkpoint: str  # a causal LM (and its tokenizer): hub id or local directory
    embed_dim: int  # the VL-JEPA model's shared-space width
    num_layers: int | None = None  # keep the LM's first N layers (None: all): a light decoder
    prefix_length: int = 4
    mapper_hidden: int = 512
    # Training noise, as the expected norm of the noise added to the unit embedding. 0.3 moves an
    # embedding by about the distance between Ŝ_Y and S_Y of a reasonably trained predictor.
    noise_norm: float = 0.3
    max_tokens: int = 32  # longest decoded text (and longest training target), in tokens

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int, int]:
    """(bos, eos, pad): Llama-style tokenizers name BOS / EOS; BERT-style ones CLS / SEP."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if bos is None or eos is None:
        raise ValueError("the decoder's tokenizer defines neither BOS/EOS nor CLS/SEP tokens")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return bos, eos, pad


def add_embedding_noise(embeddings: torch.Tensor, noise_norm: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Unit embeddings (B, E) + isotropic Gaussian noise of expected norm `noise_norm`."""
    if noise_norm <= 0:
        return embeddings
    noise = torch.randn(embeddings.shape, generator=generator, dtype=embeddings.dtype).to(embeddings.device)
    return embeddings + noise * (noise_norm / math.sqrt(embeddings.shape[-1]))


class YDecoder(nn.Module):
    def __init__(self, config: YDecoderConfig, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        self.config = config
        self.lm = lm
        self.tokenizer = tokenizer
        self.bos_id, self.eos_id, self.pad_id = special_ids(tokenizer)
        width = lm.get_input_embeddings().embedding_dim
        self.mapper = nn.Sequential(
            nn.Linear(config.embed_dim, config.mapper_hidden), nn.GELU(),
            nn.Linear(config.mapper_hidden, config.prefix_length * width),
        )

    @classmethod
    def from_pretrained(cls, config: YDecoderConfig, **kwargs) -> "YDecoder":
        with loading(config.checkpoint):
            lm = AutoModelForCausalLM.from_pretrained(config.checkpoint, **kwargs)
        tokenizer = load_tokenizer(config.checkpoint)
        if config.num_layers is not None:
            layers = lm.model.layers
            if not 1 <= config.num_layers <= len(layers):
                raise ValueError(f"num_layers={config.num_layers}: the checkpoint has {len(layers)} layers")
            lm.model.layers = layers[: config.num_layers]
            lm.config.num_hidden_layers = config.num_layers
        return cls(config, lm, tokenizer)

    # -- shapes --------------------------------------------------------------------------------
    def prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, P, d): the embedding as prompt vectors, BOS appended."""
        unit = F.normalize(embeddings.float(), dim=-1).to(self.mapper[0].weight.dtype)
        prefix = self.mapper(unit).view(unit.shape[0], self.config.prefix_length, -1)
        bos = self.lm.get_input_embeddings()(torch.full((unit.shape[0], 1), self.bos_id, device=unit.device))
        return torch.cat([prefix, bos.to(prefix.dtype)], dim=1)

    def tokenize_targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """texts -> (ids, mask) (B, L): tokens then EOS, right-padded, at most max_tokens."""
        rows = [self.tokenizer(t, add_special_tokens=False)["input_ids"][: self.config.max_tokens - 1] + [self.eos_id]
                for t in texts]
        longest = max(len(r) for r in rows)
        ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask

    # -- training --------------------------------------------------------------------------------
    def forward(self, embeddings: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-entropy of the target tokens given the embedding (a scalar)."""
        prefix = self.prefix(embeddings)  # (B, P + 1, d)
        tokens = self.lm.get_input_embeddings()(target_ids)  # (B, L, d)
        inputs = torch.cat([prefix, tokens.to(prefix.dtype)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=target_mask.dtype, device=target_mask.device),
                          target_mask], dim=1)
        logits = self.lm(inputs_embeds=inputs, attention_mask=mask).logits  # (B, P + 1 + L, V)
        # position P (the BOS) predicts token 0, ..., position P + L - 1 predicts token L - 1 (EOS)
        start = prefix.shape[1] - 1
        predicted = logits[:, start : start + target_ids.shape[1]].float()
        labels = target_ids.masked_fill(target_mask == 0, -100)
        return F.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), labels.reshape(-1), ignore_index=-100)

    # -- decoding --------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, embeddings: torch.Tensor, num_beams: int = 1, max_new_tokens: int | None = None) -> list[str]:
        """(B, E) -> B texts; num_beams=1 is greedy decoding, more is beam search."""
        device = next(self.parameters()).device
        prefix = self.prefix(embeddings.to(device))
        output = self.lm.generate(
            inputs_embeds=prefix, attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long, device=device),
            max_new_tokens=max_new_tokens or self.config.max_tokens, num_beams=num_beams, do_sample=False,
            eos_token_id=self.eos_id, pad_token_id=self.pad_id, bos_token_id=self.bos_id,
        )  # decoder-only generation from inputs_embeds returns only the new tokens
        return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]
