"""The y-encoder's text-only hard-negative test (paper §4.6, the "TOT" setup of SugarCrepe++ and
VISLA): triplets of two descriptions of the same thing (p1, p2, worded differently) and a negative
n that differs from p1 in one attribute, relation or object (worded almost like it). A triplet is
right when sim(p1, p2) beats both sim(p1, n) and sim(p2, n); accuracy is the micro average over
triplets, with a breakdown by category when the file names one.

Design choices:
- the file is JSON Lines, a JSON list of objects, or a JSON object of objects (keyed by id), so a
  benchmark's own annotation file is read as it comes; `fields` names its three text fields;
- several files are read as one set, and a record naming no category takes its file's name: a
  benchmark kept as a file per category (SugarCrepe's replace_att.json, swap_obj.json, ...) gets
  the micro average over all and a row per file;
- every distinct text is embedded once (negatives and paraphrases repeat across triplets);
- ties count as wrong: an encoder that cannot tell p2 from n has not passed;
- no chance level is reported: embeddings that ignore the text would score 1/3, but an encoder that
  goes by the words (a random network, bag of words) puts p1 next to n and scores near 0, which is
  what the test is built to catch.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import fsspec
import torch

DEFAULT_FIELDS = ("p1", "p2", "n")
CATEGORY_FIELD = "category"


@dataclass(frozen=True)
class TextTriplet:
    p1: str
    p2: str
    n: str
    category: str = ""

    def to_json(self) -> dict:
        return {"p1": self.p1, "p2": self.p2, "n": self.n, CATEGORY_FIELD: self.category}


def parse_fields(spec: str) -> tuple[str, str, str]:
    """"p1,p2,n" -> the names of the two positives' and the negative's fields in the file."""
    names = tuple(name.strip() for name in spec.split(","))
    if len(names) != 3 or not all(names) or len(set(names)) != 3:
        raise ValueError(f"three distinct field names, P1,P2,N, are needed (got {spec!r})")
    return names  # type: ignore[return-value]


def _records(text: str, url: str) -> list[tuple[str, object]]:
    """(where, record) for each record of a JSON file (a list, or an object of objects keyed by id)
    or of a JSON Lines file."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        pass  # JSON Lines, or broken: read line by line, which names the bad line
    else:
        if isinstance(whole, list):
            return [(f"{url} item {i}", record) for i, record in enumerate(whole)]
        if isinstance(whole, dict) and whole and all(isinstance(v, dict) for v in whole.values()):
            return [(f"{url} key {key!r}", record) for key, record in whole.items()]
        return [(f"{url} line 1", whole)]  # a JSON Lines file of one triplet
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"{url} line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise ValueError(f"{url} line {number} is not JSON: {error}") from None
    return records


def read_triplet_files(urls: Sequence[str], fields: Sequence[str] = DEFAULT_FIELDS) -> list[TextTriplet]:
    """The triplets of several files as one set; with more than one, a record without a category
    takes its file's name (without the extension)."""
    if len(urls) == 1:
        return read_triplets(urls[0], fields)
    return [triplet for url in urls for triplet in read_triplets(url, fields, default_category=PurePosixPath(url).stem)]


def read_triplets(url: str, fields: Sequence[str] = DEFAULT_FIELDS, default_category: str = "") -> list[TextTriplet]:
    """The triplets of a local or remote (s3://...) file; a clear error naming the record that is
    missing a field or holds a non-text value."""
    try:
        with fsspec.open(url, "r", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ValueError(f"no triplet file at {url}") from None
    triplets = []
    for where, record in _records(text, url):
        if not isinstance(record, dict):
            raise ValueError(f"{where}: a triplet is a JSON object, got {type(record).__name__}")
        missing = [name for name in fields if name not in record]
        if missing:
            raise ValueError(f"{where} has no field {', '.join(map(repr, missing))} "
                             f"(its fields: {', '.join(sorted(record))}; name them with --triplet-fields P1,P2,N)")
        texts = [record[name] for name in fields]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"{where}: fields {', '.join(fields)} must be non-empty strings")
        triplets.append(TextTriplet(*texts, category=str(record.get(CATEGORY_FIELD, default_category))))
    if not triplets:
        raise ValueError(f"{url} holds no triplets")
    return triplets


def write_triplets(url: str, triplets: Sequence[TextTriplet]) -> None:
    with fsspec.open(url, "w", encoding="utf-8") as handle:
        for triplet in triplets:
            handle.write(json.dumps(triplet.to_json()) + "\n")


@torch.no_grad()
def triplet_accuracy(embed_texts: Callable[[list[str]], torch.Tensor], triplets: Sequence[TextTriplet]) -> dict:
    """Accuracy over `triplets` of the embeddings `embed_texts` gives, one row per text (such as
    `VLJepa.embed_texts`'s S_Y); rows are L2-normalised here, so similarities are cosines whatever
    the encoder returns."""
    texts = sorted({text for t in triplets for text in (t.p1, t.p2, t.n)})
    index = {text: i for i, text in enumerate(texts)}
    embeddings = torch.nn.functional.normalize(embed_texts(texts).float().cpu(), dim=-1)  # (T, E)

    def rows(attribute: str) -> torch.Tensor:
        return embeddings[[index[getattr(t, attribute)] for t in triplets]]

    p1, p2, n = rows("p1"), rows("p2"), rows("n")
    positive = (p1 * p2).sum(-1)
    correct = (positive > (p1 * n).sum(-1)) & (positive > (p2 * n).sum(-1))
    by_category: dict[str, list[bool]] = defaultdict(list)
    for triplet, right in zip(triplets, correct.tolist()):
        by_category[triplet.category].append(right)
    result = {"accuracy": float(correct.float().mean()), "num_triplets": len(triplets)}
    if set(by_category) != {""}:
        result["by_category"] = {category: {"accuracy": sum(values) / len(values), "num_triplets": len(values)}
                                 for category, values in sorted(by_category.items())}
    return result
