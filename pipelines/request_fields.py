"""The request fields of the HTTP ingress: parsing a size-checked multipart body, and checking each
field's type and range. Every failure is an HTTPException with a message (400 for a malformed body,
422 for a field of the wrong type or out of range), never a 500.

Form fields arrive as strings (lists as JSON strings); JSON bodies carry real types. Both are
accepted where they mean the same thing ("3" and 3 for an integer)."""

import json

from fastapi import HTTPException


async def parse_multipart(raw: bytes, content_type: str, limit: int) -> dict:
    """Parse an already size-checked multipart body: fields as str, the media file as bytes."""
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
        parsed[key] = await value.read() if isinstance(value, UploadFile) else value
    return parsed


def maybe_json(value):
    """Form fields carry lists as JSON strings; plain strings stay strings."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise HTTPException(400, "a form field that starts with '[' or '{' must be valid JSON") from None
    return value


def text_field(fields: dict, name: str, required: bool = True) -> str | None:
    value = fields.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise HTTPException(422, f"'{name}' must be a non-empty string")
    return value


def list_field(fields: dict, name: str, limit: int) -> list[str]:
    value = fields.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise HTTPException(422, f"'{name}' must be a list of non-empty strings")
    if not value:
        raise HTTPException(422, f"'{name}' is empty")
    if len(value) > limit:
        raise HTTPException(422, f"'{name}' has {len(value)} entries; at most {limit} are allowed")
    return value


def int_field(fields: dict, name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # form fields arrive as strings
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise HTTPException(422, f"'{name}' must be an integer from {low} to {high}")
    return value


def float_field(fields: dict, name: str, default: float, low: float, high: float) -> float:
    value = fields.get(name, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise HTTPException(422, f"'{name}' must be a number") from None
    if not low <= value <= high:
        raise HTTPException(422, f"'{name}' must be between {low} and {high}")
    return value
