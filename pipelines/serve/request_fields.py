"""The request fields of the HTTP ingress: parsing a size-checked multipart body, and one typed spec
per field that both reads it (type and range checked) and describes it in the OpenAPI schema, so
the bounds a client reads in /docs are the bounds the server enforces.

Every failure is an HTTPException with a message (400 for a malformed body, 422 for a field of the
wrong type or out of range), never a 500. Form fields arrive as strings (lists as JSON strings);
JSON bodies carry real types. Both are accepted where they mean the same thing ("3" and 3 for an
integer, "false" and false for a flag)."""

import json
import math
from dataclasses import dataclass

from fastapi import HTTPException


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


def is_text(value) -> bool:
    """A str with something besides whitespace, and valid Unicode: JSON's escapes can spell a lone
    surrogate ("\\ud800"), which no tokenizer and no UTF-8 response can carry. Let in, one in an
    item id made every later list or search of the index a 500."""
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class TextField:
    name: str
    description: str
    required: bool = True

    def read(self, fields: dict) -> str | None:
        value = fields.get(self.name)
        if value is None and not self.required:
            return None
        if not is_text(value):
            raise HTTPException(422, f"'{self.name}' must be a non-empty string of valid Unicode")
        return value

    def schema(self) -> dict:
        return {"type": "string", "minLength": 1, "pattern": r"\S", "description": self.description}


@dataclass(frozen=True, kw_only=True)
class TextListField:
    name: str
    description: str
    limit: int
    required: bool = True

    def read(self, fields: dict) -> list[str]:
        value = fields.get(self.name)
        if not isinstance(value, list) or not all(is_text(v) for v in value):
            raise HTTPException(422, f"'{self.name}' must be a list of non-empty strings of valid Unicode")
        if not value:
            raise HTTPException(422, f"'{self.name}' is empty")
        if len(value) > self.limit:
            raise HTTPException(422, f"'{self.name}' has {len(value)} entries; at most {self.limit} are allowed")
        return value

    def schema(self) -> dict:
        return {"type": "array", "items": {"type": "string", "minLength": 1, "pattern": r"\S"},
                "minItems": 1, "maxItems": self.limit, "description": self.description}


@dataclass(frozen=True, kw_only=True)
class IntField:
    name: str
    description: str
    default: int | None  # None: optional with no default (the caller decides what absence means)
    low: int
    high: int
    required: bool = False

    def read(self, fields: dict) -> int | None:
        value = fields.get(self.name, self.default)
        if value is None and self.default is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)  # form fields arrive as strings
        if not isinstance(value, int) or isinstance(value, bool) or not self.low <= value <= self.high:
            raise HTTPException(422, f"'{self.name}' must be an integer from {self.low} to {self.high}")
        return value

    def schema(self) -> dict:
        schema = {"type": "integer", "minimum": self.low, "maximum": self.high, "description": self.description}
        return schema if self.default is None else {**schema, "default": self.default}


@dataclass(frozen=True, kw_only=True)
class FloatField:
    name: str
    description: str
    default: float | None  # None: required
    low: float
    high: float

    @property
    def required(self) -> bool:
        return self.default is None

    def read(self, fields: dict) -> float:
        value = fields.get(self.name, self.default)
        if value is None:
            raise HTTPException(422, f"'{self.name}' is required")
        if isinstance(value, bool):
            raise HTTPException(422, f"'{self.name}' must be a number")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise HTTPException(422, f"'{self.name}' must be a number") from None
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise HTTPException(422, f"'{self.name}' must be between {self.low} and {self.high}")
        return value

    def schema(self) -> dict:
        schema = {"type": "number", "minimum": self.low, "maximum": self.high, "description": self.description}
        return schema if self.default is None else {**schema, "default": self.default}


@dataclass(frozen=True, kw_only=True)
class ChoiceField:
    name: str
    description: str
    choices: tuple[str, ...]
    default: str
    required: bool = False

    def read(self, fields: dict) -> str:
        value = fields.get(self.name, self.default)
        if value not in self.choices:
            raise HTTPException(422, f"'{self.name}' must be one of {', '.join(self.choices)}")
        return value

    def schema(self) -> dict:
        return {"type": "string", "enum": list(self.choices), "default": self.default, "description": self.description}


@dataclass(frozen=True, kw_only=True)
class FlagField:
    name: str
    description: str
    default: bool
    required: bool = False

    def read(self, fields: dict) -> bool:
        value = fields.get(self.name, self.default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")  # form fields arrive as strings
        raise HTTPException(422, f"'{self.name}' must be true or false")

    def schema(self) -> dict:
        return {"type": "boolean", "default": self.default, "description": self.description}


Field = TextField | TextListField | IntField | FloatField | ChoiceField | FlagField


class RequestBody:
    """What one endpoint reads: its fields and, when `media` says what it may be, an upload (the
    multipart file part `media`, or base64 in the JSON field `media_b64`). It documents the body
    (`openapi()`) and refuses a field it does not read: a misspelt optional field (`segmnts`) would
    otherwise be dropped silently and the request served with the default."""

    def __init__(self, *fields: Field, media: str | None = None):
        self.fields, self.media = fields, media

    def refuse_unknown(self, given: dict, upload_field: str = "") -> None:
        """`given`: the fields left after the upload (`upload_field`) was taken out."""
        unknown = sorted(set(given) - {f.name for f in self.fields})
        if unknown:
            takes = [upload_field] * bool(self.media) + [f.name for f in self.fields]
            raise HTTPException(422, f"unknown field{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}: "
                                     f"this endpoint takes {', '.join(map(repr, takes)) or 'no fields'}")

    def query_parameters(self) -> dict:
        """FastAPI's `openapi_extra` for a GET reading these fields from its query string."""
        return {"parameters": [{"name": f.name, "in": "query", "required": f.required, "schema": f.schema(),
                                "description": f.description} for f in self.fields]}

    def openapi(self) -> dict:
        """FastAPI's `openapi_extra`: the JSON object and the multipart form (each list as one part
        holding a JSON array), neither with fields beyond these."""
        properties = {f.name: f.schema() for f in self.fields}
        required = [f.name for f in self.fields if f.required]

        def body(upload: dict) -> dict:
            return {"type": "object", "properties": {**upload, **properties}, "required": [*upload, *required],
                    "additionalProperties": False}

        media = self.media
        as_json = body({"media_b64": {"type": "string", "contentEncoding": "base64",
                                      "description": f"{media}, base64-encoded"}} if media else {})
        form = body({"media": {"type": "string", "format": "binary", "description": media}} if media else {})
        lists = {f.name: {"contentType": "application/json"} for f in self.fields if isinstance(f, TextListField)}
        return {"requestBody": {"required": True, "content": {
            "application/json": {"schema": as_json},
            "multipart/form-data": {"schema": form, **({"encoding": lists} if lists else {})}}}}
