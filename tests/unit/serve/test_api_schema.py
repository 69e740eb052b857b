"""The ingress's OpenAPI schema, without Serve: it documents every field the ingress reads with the
bounds the ingress enforces (both come from pipelines/serve/api_fields.py), and every endpoint's answers
and refusals. (tests/integration/serve/test_serve.py checks the served answers against this schema.)"""

import jsonschema
import pytest
from fastapi import HTTPException

from pipelines.serve import api_fields
from pipelines.serve.ingress import app
from pipelines.serve.request_fields import ChoiceField, FlagField, FloatField, IntField, TextField, TextListField

SPECS = [v for v in vars(api_fields).values()
         if isinstance(v, (TextField, TextListField, IntField, FloatField, ChoiceField, FlagField))]


def _accepted(spec, value) -> bool:
    try:
        spec.read({spec.name: value})
        return True
    except HTTPException as exc:
        assert exc.status_code == 422
        return False


def _documented(spec, value) -> bool:
    return jsonschema.Draft202012Validator(spec.schema()).is_valid(value)


def _edges(spec) -> list:
    """Values on and just past every documented bound of a field, and the wrong types."""
    if isinstance(spec, (IntField, FloatField)):
        step = 1 if isinstance(spec, IntField) else 1e-6
        values = [spec.low, spec.high, spec.low - step, spec.high + step, "x", True]
        return values + ([2.5] if isinstance(spec, IntField) else [])
    if isinstance(spec, TextListField):
        return [["a"], ["a"] * spec.limit, ["a"] * (spec.limit + 1), [], ["a", " "], ["a", 3], "a"]
    if isinstance(spec, ChoiceField):
        return [*spec.choices, "other", 3]
    if isinstance(spec, FlagField):
        return [True, False, "maybe", 3]
    return ["a query", "", "   ", 3, ["a"]]


def test_every_field_of_the_api_is_specified():
    names = {s.name for s in SPECS}
    assert {"labels", "candidates", "texts", "question", "query", "id", "k", "beams", "window", "stride",
            "strategy", "segments", "seconds_per_decode", "threshold", "pool"} <= names


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{type(s).__name__}-{s.name}")
def test_the_documented_bounds_are_the_enforced_bounds(spec):
    for value in _edges(spec):
        assert _accepted(spec, value) == _documented(spec, value), value


def test_every_endpoint_documents_its_body_answer_and_refusals():
    schema = app.openapi()
    components = schema["components"]["schemas"]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            answers = operation["responses"]
            ok = answers["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert components[ok]["additionalProperties"] is False, (path, ok)  # no undocumented keys
            assert ("401" in answers) == (path != "/healthz"), path
            if method == "post":
                body = operation["requestBody"]["content"]
                assert set(body) == {"application/json", "multipart/form-data"}, path
                takes_media = "media" in body["multipart/form-data"]["schema"]["properties"]
                assert takes_media == ("media_b64" in body["application/json"]["schema"]["properties"]), path
                assert takes_media == ("415" in answers), path
    stream = schema["paths"]["/v1/stream"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"window", "stride", "strategy", "segments", "pool", "query"} <= set(stream["properties"])
    classify = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert classify["application/json"]["schema"]["required"] == ["media_b64", "labels"]
    assert classify["multipart/form-data"]["encoding"]["labels"]["contentType"] == "application/json"
