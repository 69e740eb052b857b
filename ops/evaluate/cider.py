"""CIDEr (Vedantam et al. 2015), the captioning metric of paper §4.4-4.5, through pycocoevalcap's
reference implementation (CIDEr-D: Gaussian length penalty, clipped counts, x10 scale).

pycocoevalcap's PTB tokenizer needs Java; captions are tokenised here instead, the way it does
for plain English: lower case, punctuation dropped, whitespace split.
"""

from __future__ import annotations

import re

from pycocoevalcap.cider.cider import Cider

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
