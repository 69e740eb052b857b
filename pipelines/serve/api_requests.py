"""What the HTTP ingress accepts, as pydantic models: one per endpoint, each field with its bounds
and description. FastAPI documents each body from its model (OpenAPI at /openapi.json, /docs) and
the ingress validates each request with the same model, so the bounds a client reads are the bounds
the server enforces.

Hand-written here, beside the models, is only what pydantic does not do: parsing a size-checked
multipart body (one route takes JSON with `media_b64` or a multipart form with a `media` file) and
the error messages. Every failure is an HTTPException with a message: 400 for a malformed body, 422
for a field of the wrong type or out of range (the message names the field and its bounds), never
a 500. Form fields arrive as strings (lists as JSON strings); JSON bodies carry real types. Both are
accepted where they mean the same thing ("3" and 3 for an integer, "false" and false for a flag).
"""

from __future__ import annotations

import json
from typing import Annotated, ClassVar, Literal, TypeVar

from fastapi import HTTPException
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
)

from ops.decode.selective_decoding import STRATEGIES

MAX_CANDIDATES = 256  # labels or answers ranked in one request
MAX_TEXTS = 256  # texts embedded in one request
MAX_QUERY_TOKENS = 512  # the predictor's query length; counted with its tokenizer
MAX_BEAMS = 8

ANY_MEDIA = "an image (JPEG, PNG, WebP) or a video (MP4, WebM, MKV, AVI)"
VIDEO_ONLY = "a video (MP4, WebM, MKV, AVI)"


async def parse_multipart(raw: bytes, content_type: str, limit: int) -> dict:
    """Parse an already size-checked multipart body: fields as str, the media file as bytes. A field
    sent twice is a 400: which of the two a client meant cannot be guessed."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield raw

    try:
        form = await MultiPartParser(Headers({"content-type": content_type}), stream(), max_part_size=limit).parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"malformed multipart body: {exc.message}") from None
    parsed = {}
    for key, value in form.multi_items():
        if key in parsed:
            raise HTTPException(400, f"multipart field '{key}' is given more than once "
                                     "(send a list as one JSON-array field)")
        parsed[key] = await value.read() if isinstance(value, UploadFile) else value
    return parsed


def parse_json(text: str | bytes, what: str):
    """json.loads, or a 400 naming `what`. RecursionError too: a few KB of '[[[[...' nest deeper than
    the parser's stack."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPException(400, f"{what} nests too deeply") from None


def maybe_json(value):
    """Form fields carry lists as JSON strings; plain strings stay strings."""
    if isinstance(value, str) and value[:1] in "[{":
        return parse_json(value, "a form field that starts with '[' or '{'")
    return value


# Field types, each with the bounds pydantic checks and documents. `kind` (with `low` and `high`)
# in a field's JSON-schema extra picks the message a refusal gets; field_schemas drops it from the docs.
def valid_unicode(value: str) -> str:
    """JSON's escapes can spell a lone surrogate ("\\ud800"), which no tokenizer and no UTF-8
    response can carry; let into an item id, it made every later list or search of the index a 500."""
    value.encode("utf-8")  # UnicodeEncodeError is a ValueError: pydantic reports it as this field's
    return value


def form_integer(value):
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def form_number(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def form_flag(value):
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return value


Text = Annotated[str, Field(min_length=1, pattern=r"\S", strict=True), AfterValidator(valid_unicode)]
Flag = Annotated[StrictBool, BeforeValidator(form_flag)]


def Texts(limit: int):  # noqa: N802 (a type)
    return Annotated[list[Text], Field(min_length=1, max_length=limit)]


def Integer(low: int, high: int):  # noqa: N802 (a type)
    return Annotated[StrictInt, Field(ge=low, le=high), BeforeValidator(form_integer)]


def Number(low: float, high: float):  # noqa: N802 (a type)
    return Annotated[StrictFloat, Field(ge=low, le=high, allow_inf_nan=False), BeforeValidator(form_number)]


def text(description: str, **default):
    return Field(description=description, json_schema_extra={"kind": "text"}, **default)


def texts(description: str, limit: int):
    return Field(description=description, json_schema_extra={"kind": "texts", "high": limit})


def integer(description: str, default, low: int, high: int):
    return Field(default, description=description, json_schema_extra={"kind": "integer", "low": low, "high": high})


def number(description: str, low: float, high: float, default=...):
    return Field(default, description=description, json_schema_extra={"kind": "number", "low": low, "high": high})


def choice(description: str, default: str):
    return Field(default, description=description, json_schema_extra={"kind": "choice"})


def flag(description: str, default: bool):
    return Field(default, description=description, json_schema_extra={"kind": "flag"})


QUERY_HELP = (f"the question or instruction the prediction is conditioned on, at most {MAX_QUERY_TOKENS} tokens; "
              "default: the model's captioning prompt")
PREFIX_HELP = "only items whose id starts with this: one feature cache's videos are `<cache name>/`"


class RequestBody(BaseModel):
    """One endpoint's fields. `MEDIA` says what upload it takes besides them (the multipart file
    part `media`, or base64 in the JSON field `media_b64`), None for none. A field it does not take
    is refused: a misspelt optional field (`segmnts`) would otherwise be dropped silently and the
    request served with the default."""

    model_config = ConfigDict(extra="forbid")
    MEDIA: ClassVar[str | None] = None


class EmbedText(RequestBody):
    texts: Texts(MAX_TEXTS) = texts("texts to embed with the y-encoder", MAX_TEXTS)


class EmbedMedia(RequestBody):
    MEDIA = ANY_MEDIA
    query: Text | None = text(QUERY_HELP, default=None)


class Classify(RequestBody):
    MEDIA = ANY_MEDIA
    labels: Texts(MAX_CANDIDATES) = texts("candidate labels to rank", MAX_CANDIDATES)
    query: Text | None = text(QUERY_HELP, default=None)


class Vqa(RequestBody):
    MEDIA = ANY_MEDIA
    question: Text = text(f"the question, at most {MAX_QUERY_TOKENS} tokens")
    candidates: Texts(MAX_CANDIDATES) = texts("candidate answers to rank", MAX_CANDIDATES)


class AddItem(RequestBody):
    MEDIA = ANY_MEDIA
    id: Text = text("the item's id in the index; adding an existing id replaces it")


class ListItems(RequestBody):
    """Query parameters: GET /v1/index/items?offset=&limit=&prefix="""

    offset: Integer(0, 10**9) = integer("items to skip", 0, 0, 10**9)
    limit: Integer(1, 10_000) = integer("items per page", 1000, 1, 10_000)
    prefix: Text | None = text(PREFIX_HELP, default=None)


class Retrieve(RequestBody):
    query: Text = text("the text to find videos (and images) for")
    k: Integer(1, 1000) = integer("how many results", 10, 1, 1000)
    prefix: Text | None = text(PREFIX_HELP, default=None)
    probe: Integer(1, 1_000_000) | None = integer(
        "IVF partitions of the ANN index a search scans, at most the index's partitions (422 above): more finds "
        "more of the true nearest items and costs more; default: the server's `--index-probe`; ignored by an "
        "index without an ANN index (exact search)", None, 1, 1_000_000)


class Caption(RequestBody):
    MEDIA = ANY_MEDIA
    query: Text | None = text(QUERY_HELP, default=None)
    beams: Integer(1, MAX_BEAMS) = integer("beam width; 1 is greedy decoding", 1, 1, MAX_BEAMS)


class Windows(RequestBody):
    """The window grid of a stream and the online rule (the flags of `vljepa stream`)."""

    window: Number(0.1, 60.0) = number("seconds of video per window", 0.1, 60.0, 2.0)
    stride: Number(0.05, 60.0) = number("seconds between window starts", 0.05, 60.0, 0.5)
    threshold: Number(0.0, 4.0) = number("strategy online: the variance that triggers a decode", 0.0, 4.0, 0.1)
    online_window: Integer(2, 1000) = integer("strategy online: the windows whose variance is watched", 4, 2, 1000)
    pool: Flag = flag("decode each segment's average embedding (true) or its midpoint window's (false)", True)
    query: Text | None = text(QUERY_HELP, default=None)


class Stream(Windows):
    MEDIA = VIDEO_ONLY
    strategy: Literal[tuple(STRATEGIES)] = choice(
        "adaptive: Ward segmentation of the embedding stream; uniform: fixed-length segments; "
        "online: decode when the local variance exceeds `threshold`", "adaptive")
    segments: Integer(1, 10_000) | None = integer(
        "segments to decode, one text each; default: one per `seconds_per_decode` of video", None, 1, 10_000)
    seconds_per_decode: Number(0.1, 3600.0) = number("without `segments`: the average seconds between decodes", 0.1, 3600.0, 4.0)


class Live(Windows):
    """The query string of WebSocket /v1/live."""

    fps: Number(0.1, 240.0) = number("frames per second of the live feed: frame n is at n / fps seconds", 0.1, 240.0)


Request = TypeVar("Request", bound=RequestBody)


def refuse_unknown(model: type[RequestBody], given: dict, upload_field: str = "") -> None:
    """`given`: the fields left after the upload (`upload_field`) was taken out. Checked before any
    field's value, so that a misspelt name is what the client hears about first."""
    unknown = sorted(set(given) - set(model.model_fields))
    if unknown:
        takes = [upload_field] * bool(model.MEDIA and upload_field) + list(model.model_fields)
        raise HTTPException(422, f"unknown field{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}: "
                                 f"this endpoint takes {', '.join(map(repr, takes)) or 'no fields'}")


def read(model: type[Request], fields: dict) -> Request:
    """The validated request, or a 422 whose message names the first bad field and its bounds. A
    null is accepted only where the field's default is null."""
    refuse_unknown(model, fields)
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise HTTPException(422, refusal(model, exc.errors()[0])) from None


def refusal(model: type[RequestBody], error: dict) -> str:
    name = str(error["loc"][0])
    info = model.model_fields[name]
    kind, low, high = (info.json_schema_extra.get(key) for key in ("kind", "low", "high"))
    if kind == "texts":
        if len(error["loc"]) == 1 and error["type"] == "too_short":
            return f"'{name}' is empty"
        if len(error["loc"]) == 1 and error["type"] == "too_long":
            return f"'{name}' has {error['ctx']['actual_length']} entries; at most {high} are allowed"
        return f"'{name}' must be a list of non-empty strings of valid Unicode"
    if kind == "integer":
        return f"'{name}' must be an integer from {low} to {high}"
    if kind == "number":
        if error["type"] == "missing" or error.get("input", 0) is None:
            return f"'{name}' is required"
        if error["type"] in ("float_type", "float_parsing"):
            return f"'{name}' must be a number"
        return f"'{name}' must be between {low} and {high}"
    if kind == "choice":
        return f"'{name}' must be one of {', '.join(info.annotation.__args__)}"
    if kind == "flag":
        return f"'{name}' must be true or false"
    return f"'{name}' must be a non-empty string of valid Unicode"


def openapi_body(model: type[RequestBody]) -> dict:
    """FastAPI's `openapi_extra` for a POST: the JSON object and the multipart form (each list as one
    part holding a JSON array), neither with fields beyond the model's."""
    schema = field_schemas(model)
    media = model.MEDIA

    def body(upload: dict) -> dict:
        return {"type": "object", "properties": {**upload, **schema["properties"]},
                "required": [*upload, *schema.get("required", [])], "additionalProperties": False}

    as_json = body({"media_b64": {"type": "string", "contentEncoding": "base64",
                                  "description": f"{media}, base64-encoded"}} if media else {})
    form = body({"media": {"type": "string", "format": "binary", "description": media}} if media else {})
    lists = {name: {"contentType": "application/json"} for name, info in model.model_fields.items()
             if info.json_schema_extra["kind"] == "texts"}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": as_json},
        "multipart/form-data": {"schema": form, **({"encoding": lists} if lists else {})}}}}


def openapi_query(model: type[RequestBody]) -> dict:
    """FastAPI's `openapi_extra` for a GET reading the model's fields from its query string."""
    schema = field_schemas(model)
    required = set(schema.get("required", []))
    return {"parameters": [{"name": name, "in": "query", "required": name in required, "schema": prop,
                            "description": prop.get("description", "")}
                           for name, prop in schema["properties"].items()]}


def field_schemas(model: type[RequestBody]) -> dict:
    """The model's JSON schema, without the `kind` marks only the error messages use."""
    schema = model.model_json_schema()
    for prop in schema["properties"].values():
        for key in ("kind", "low", "high"):
            prop.pop(key, None)
    return schema
