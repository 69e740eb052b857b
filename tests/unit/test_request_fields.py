"""The ingress's field checks, without Serve: every bad value is a 4xx with the field's name, never
an exception that would be a 500. (tests/integration/test_serve.py sends the same classes of bad
input over HTTP.)"""

import asyncio

import pytest
from fastapi import HTTPException

from pipelines.request_fields import float_field, int_field, list_field, maybe_json, parse_multipart, text_field


def _status(call) -> tuple[int, str]:
    with pytest.raises(HTTPException) as info:
        call()
    return info.value.status_code, info.value.detail


def test_integers_come_as_numbers_or_form_strings_and_stay_in_range():
    assert int_field({"beams": "3"}, "beams", 1, 1, 8) == 3 == int_field({"beams": 3}, "beams", 1, 1, 8)
    assert int_field({}, "beams", 1, 1, 8) == 1
    for bad in (True, "3.5", 9, 0, "-1", None, [3]):
        status, detail = _status(lambda: int_field({"beams": bad}, "beams", 1, 1, 8))
        assert status == 422 and "'beams'" in detail, bad


def test_floats_refuse_text_nan_and_out_of_range():
    assert float_field({"window": "2.5"}, "window", 2.0, 0.1, 60.0) == 2.5
    for bad in ("abc", "nan", "inf", 0.0, None, [1.0]):
        status, detail = _status(lambda: float_field({"window": bad}, "window", 2.0, 0.1, 60.0))
        assert status == 422 and "'window'" in detail, bad


def test_lists_and_texts():
    assert list_field({"labels": ["a", "b"]}, "labels", 2) == ["a", "b"]
    for bad in ([], ["a", "b", "c"], ["a", ""], ["a", 3], "a", None):
        status, detail = _status(lambda: list_field({"labels": bad}, "labels", 2))
        assert status == 422 and "'labels'" in detail, bad
    assert text_field({}, "query", required=False) is None
    assert _status(lambda: text_field({"query": "  "}, "query"))[0] == 422
    assert _status(lambda: text_field({}, "query"))[0] == 422


def test_malformed_bodies_are_400():
    assert maybe_json('["a", "b"]') == ["a", "b"] and maybe_json("plain") == "plain"
    assert _status(lambda: maybe_json("[not json"))[0] == 400
    status, detail = _status(lambda: asyncio.run(
        parse_multipart(b"garbage", "multipart/form-data; boundary=XYZ", 1024)))
    assert status == 400 and "multipart" in detail
