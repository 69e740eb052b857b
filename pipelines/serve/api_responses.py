"""What the HTTP ingress answers, as pydantic models: they document every endpoint's responses in
the OpenAPI schema (/docs, /openapi.json) and nothing else. The ingress returns plain dicts and
FastAPI does not validate them against these models (`response_model=None`): the ingress is the
busiest CPU of a request (docs/benchmarks.md), and tests/integration/serve/test_serve.py checks over HTTP
that every answer matches its documented schema instead.

Each model forbids extra keys so that the schema says `additionalProperties: false`: an answer with
a field the documentation does not name fails that test."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Documented(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Status(Documented):
    status: Literal["ok", "ready"]


class TextEmbeddings(Documented):
    embeddings: list[list[float]] = Field(description="S_Y, one per text, in the order sent")


class MediaEmbedding(Documented):
    kind: Literal["image", "video"]
    embedding: list[float] = Field(description="the predicted text embedding Ŝ_Y")


class LabelScore(Documented):
    label: str
    score: float = Field(description="cosine similarity of the label's S_Y to the media's Ŝ_Y")


class Classification(Documented):
    label: str = Field(description="the best label")
    ranking: list[LabelScore] = Field(description="every label, best first")


class AnswerScore(Documented):
    answer: str
    score: float = Field(description="cosine similarity of the answer's S_Y to Ŝ_Y given the question")


class Answer(Documented):
    answer: str = Field(description="the best candidate")
    ranking: list[AnswerScore] = Field(description="every candidate, best first")


class IndexItem(Documented):
    id: str
    kind: Literal["image", "video"]
    caption: str | None = Field(None, description="items indexed from a feature cache: their caption")
    source: str | None = Field(None, description="items indexed from a feature cache: the cache's name "
                                                 "(null for items added over HTTP)")


class IndexItems(Documented):
    items: list[IndexItem] = Field(description="in the index table's order (the order of adding; a replaced "
                                               "item moves to the end), from `offset`")
    total: int = Field(description="items in the index")
    next_offset: int | None = Field(description="the `offset` of the next page; null on the last one")


class Deleted(Documented):
    deleted: str = Field(description="the id removed from the index")


class SearchHit(IndexItem):
    score: float = Field(description="cosine similarity of the item's Ŝ_Y to the query's S_Y")


class SearchResults(Documented):
    results: list[SearchHit] = Field(description="at most k items, best first")


class Caption(Documented):
    kind: Literal["image", "video"]
    text: str = Field(description="the Y-decoder's text for Ŝ_Y")


class StreamEvent(Documented):
    time: float = Field(description="seconds: the centre of the window the text was decoded at")
    text: str
    start: float = Field(description="seconds: the centre of the segment's first window")
    end: float = Field(description="seconds: the centre of the segment's last window")


class StreamEvents(Documented):
    windows: int = Field(description="windows embedded, one forward pass each")
    events: list[StreamEvent] = Field(description="one decoded text per segment, in time order")


class Error(Documented):
    detail: str = Field(description="what was wrong, in words")


ERROR_MEANINGS = {
    400: "malformed JSON, multipart or base64",
    401: "a token is configured and the request lacks `Authorization: Bearer <token>`",
    404: "no such item",
    413: "the body exceeds the size limit (checked before it is read)",
    415: "the upload is not media this endpoint takes",
    422: "a field is missing, of the wrong type or out of range; or the media cannot be decoded",
    501: "the served model has no Y-decoder",
    503: "a model deployment does not answer yet (a replica still starting, or not placed for lack of resources)",
}


def responses(answer: type[BaseModel], *errors: int) -> dict:
    """FastAPI's `responses=` for an endpoint answering `answer`, or one of `errors` (status codes)."""
    return {200: {"model": answer}, **{code: {"model": Error, "description": ERROR_MEANINGS[code]}
                                        for code in sorted(errors)}}
