"""The ingress's OpenAPI schema, without Serve: it documents every field the ingress reads with the
bounds the ingress enforces (both come from the request models of pipelines/serve/api_requests.py),
and every endpoint's answers and refusals. (tests/integration/serve/test_serve.py checks the served
answers against this schema.)"""

import jsonschema
import pytest
from fastapi import HTTPException

from pipelines.serve import api_requests
from pipelines.serve.api_requests import RequestBody, field_schemas, read
from pipelines.serve.ingress import app

MODELS = [v for v in vars(api_requests).values()
          if isinstance(v, type) and issubclass(v, RequestBody) and v is not RequestBody]
# a valid request of each model, to vary one field at a time
VALID = {"EmbedText": {"texts": ["a"]}, "Classify": {"labels": ["a"]}, "Vqa": {"question": "q", "candidates": ["a"]},
         "AddItem": {"id": "a"}, "Retrieve": {"query": "q"}, "Live": {"fps": 8}}
FIELDS = [(model, name) for model in MODELS for name in model.model_fields]


def _accepted(model, name, value) -> bool:
    try:
        read(model, {**VALID.get(model.__name__, {}), name: value})
        return True
    except HTTPException as exc:
        assert exc.status_code == 422 and f"'{name}'" in exc.detail
        return False


def _documented(model, name, value) -> bool:
    return jsonschema.Draft202012Validator(field_schemas(model)["properties"][name]).is_valid(value)


def _edges(model, name) -> list:
    """Values on and just past every documented bound of a field, and the wrong types."""
    schema = field_schemas(model)["properties"][name]
    schema = next((s for s in schema.get("anyOf", []) if s["type"] != "null"), schema)
    kind = model.model_fields[name].json_schema_extra["kind"]
    if kind in ("integer", "number"):
        step = 1 if kind == "integer" else 1e-6
        low, high = schema["minimum"], schema["maximum"]
        values = [low, high, low - step, high + step, "x", True]
        return values + ([2.5] if kind == "integer" else [])
    if kind == "texts":
        return [["a"], ["a"] * schema["maxItems"], ["a"] * (schema["maxItems"] + 1), [], ["a", " "], ["a", 3], "a"]
    if kind == "choice":
        return [*schema["enum"], "other", 3]
    if kind == "flag":
        return [True, False, "maybe", 3]
    return ["a query", "", "   ", 3, ["a"]]


def test_every_field_of_the_api_is_specified():
    names = {name for _, name in FIELDS}
    assert {"labels", "candidates", "texts", "question", "query", "id", "k", "beams", "window", "stride",
            "strategy", "segments", "seconds_per_decode", "threshold", "pool", "fps", "probe"} <= names
    assert all(model.model_fields[name].description for model, name in FIELDS)


@pytest.mark.parametrize("model, name", FIELDS, ids=lambda x: getattr(x, "__name__", x))
def test_the_documented_bounds_are_the_enforced_bounds(model, name):
    for value in _edges(model, name):
        assert _accepted(model, name, value) == _documented(model, name, value), value


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
