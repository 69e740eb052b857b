"""Captioning quality of a Y-decoder on a held-out cache (issue: decoder quality, paper §4.4).

For each captioned row, text is decoded from three embeddings and scored with CIDEr against the
row's caption:
  predicted   Ŝ_Y from the cached S_V and the captioning prompt: what a user gets;
  true        S_Y, the y-encoder's embedding of the caption itself: the decoder's ceiling;
  random      a random unit vector: the floor.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from pycocoevalcap.cider.cider import Cider

from model.vljepa import VLJepa
from model.y_decoder import YDecoder
from ops.evaluate.zero_shot import predict


@torch.no_grad()
def decode_all(decoder: YDecoder, embeddings: torch.Tensor, num_beams: int = 1, batch_size: int = 64) -> list[str]:
    texts: list[str] = []
    for start in range(0, embeddings.shape[0], batch_size):
        texts += decoder.generate(embeddings[start : start + batch_size], num_beams=num_beams)
    return texts


def caption_quality(model: VLJepa, decoder: YDecoder, rows: list[dict], caption_prompt: str,
                    num_beams: int = 1, seed: int = 0, examples: int = 3) -> dict:
    captioned = [r for r in rows if r["task"] == "caption"]
    if not captioned:
        raise ValueError("the cache holds no captioned rows to score the decoder on")
    model.eval()
    decoder.eval()
    targets = [r["target"] for r in captioned]
    embeddings = {
        "predicted": predict(model, captioned, [caption_prompt] * len(captioned)),
        "true": model.embed_texts(targets).cpu(),
        "random": F.normalize(torch.randn(len(captioned), model.config.embed_dim,
                                          generator=torch.Generator().manual_seed(seed)), dim=-1),
    }
    references = [[t] for t in targets]
    result: dict = {"num_samples": len(captioned), "num_beams": num_beams}
    for name, embedding in embeddings.items():
        decoded = decode_all(decoder, embedding, num_beams)
        result[f"cider_{name}"] = cider_scores(decoded, references)[0]
        if name == "predicted":
            result["examples"] = [{"target": t, "decoded": d} for t, d in zip(targets[:examples], decoded)]
    return result


# CIDEr (Vedantam et al. 2015), the captioning metric of paper §4.4-4.5, through pycocoevalcap's
# reference implementation (CIDEr-D: Gaussian length penalty, clipped counts, x10 scale).
#
# pycocoevalcap's PTB tokenizer needs Java; captions are tokenised here instead, the way it does
# for plain English: lower case, punctuation dropped, whitespace split.
_PUNCTUATION = re.compile(r"[^\w\s]")


def normalise_caption(text: str) -> str:
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def cider_scores(candidates: list[str], references: list[list[str]]) -> tuple[float, list[float]]:
    """(corpus CIDEr, per-candidate CIDEr). IDF weights come from the references, as in COCO."""
    if len(candidates) != len(references) or not candidates:
        raise ValueError("CIDEr needs one or more candidates, each with its list of references")
    ids = [str(i) for i in range(len(candidates))]
    # an empty candidate scores 0 but would crash the scorer's n-gram code: give it a placeholder
    result = {i: [normalise_caption(c) or "<empty>"] for i, c in zip(ids, candidates)}
    truth = {i: [normalise_caption(r) for r in refs] for i, refs in zip(ids, references)}
    score, per_item = Cider().compute_score(truth, result)
    return float(score), [float(s) for s in per_item]
