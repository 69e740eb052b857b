"""The ingress's request models, without Serve: every bad value is a 4xx with the field's name, never
an exception that would be a 500. (tests/integration/serve/test_serve.py sends the same classes of bad
input over HTTP.)"""

import asyncio
from typing import Literal

import pytest
from fastapi import HTTPException

from pipelines.serve.api_requests import (
    Flag,
    Integer,
    Number,
    RequestBody,
    Text,
    Texts,
    choice,
    flag,
    integer,
    maybe_json,
    number,
    openapi_body,
    parse_json,
    parse_multipart,
    read,
    refuse_unknown,
    text,
    texts,
)


class Small(RequestBody):
    """One field of each kind, with small bounds."""

    MEDIA = "an image"
    beams: Integer(1, 8) = integer("", 1, 1, 8)
    segments: Integer(1, 100) | None = integer("", None, 1, 100)
    window: Number(0.1, 60.0) = number("", 0.1, 60.0, 2.0)
    labels: Texts(2) = texts("", 2)
    query: Text | None = text("", default=None)
    strategy: Literal["adaptive", "uniform"] = choice("", "adaptive")
    pool: Flag = flag("", True)


class WithId(RequestBody):
    id: Text = text("")


def _read(model=Small, **fields):
    return read(model, {"labels": ["a"], **fields} if model is Small else fields)


def _status(call) -> tuple[int, str]:
    with pytest.raises(HTTPException) as info:
        call()
    return info.value.status_code, info.value.detail


def _refused(name, value, model=Small) -> bool:
    status, detail = _status(lambda: _read(model, **{name: value}))
    return status == 422 and f"'{name}'" in detail


def test_integers_come_as_numbers_or_form_strings_and_stay_in_range():
    assert _read(beams="3").beams == 3 == _read(beams=3).beams
    assert _read().beams == 1
    assert _read().segments is None and _read(segments="7").segments == 7
    for bad in (True, "3.5", 9, 0, "-1", None, [3]):
        assert _refused("beams", bad), bad
    assert _status(lambda: _read(beams=9))[1] == "'beams' must be an integer from 1 to 8"


def test_floats_refuse_text_nan_booleans_and_out_of_range():
    assert _read(window="2.5").window == 2.5 and _read().window == 2.0
    for bad in ("abc", "nan", "inf", 0.0, None, [1.0], True):
        assert _refused("window", bad), bad
    assert _status(lambda: _read(window=0.0))[1] == "'window' must be between 0.1 and 60.0"
    assert _status(lambda: _read(window="abc"))[1] == "'window' must be a number"


def test_lists_and_texts():
    assert _read(labels=["a", "b"]).labels == ["a", "b"]
    for bad in ([], ["a", "b", "c"], ["a", ""], ["a", 3], "a", None, ["a", "\ud800"]):
        assert _refused("labels", bad), bad
    assert _status(lambda: _read(labels=[]))[1] == "'labels' is empty"
    assert _status(lambda: _read(labels=["a"] * 3))[1] == "'labels' has 3 entries; at most 2 are allowed"
    assert _read().query is None and _read(query="ü 漢字 \x00").query == "ü 漢字 \x00"
    assert _refused("query", "  ") and _refused("id", None, WithId)
    assert _status(lambda: read(WithId, {}))[1] == "'id' must be a non-empty string of valid Unicode"
    assert _refused("id", "item-\ud800", WithId)  # what JSON's "\ud800" escape decodes to: not valid Unicode


def test_choices_and_flags():
    assert _read().strategy == "adaptive" and _read(strategy="uniform").strategy == "uniform"
    for bad in ("psychic", ["uniform"], None):
        assert _refused("strategy", bad), bad
    assert _status(lambda: _read(strategy="x"))[1] == "'strategy' must be one of adaptive, uniform"
    assert _read().pool is True
    assert [_read(pool=v).pool for v in (False, "false", "0", " False ", True, "true", "1")] == [False] * 4 + [True] * 3
    for bad in ("no", 0, 1.0, None, []):  # a flag that is not clearly true or false is not guessed
        assert _refused("pool", bad), bad


def test_malformed_bodies_are_400():
    assert maybe_json('["a", "b"]') == ["a", "b"] and maybe_json("plain") == "plain"
    assert _status(lambda: maybe_json("[not json"))[0] == 400
    for deep in ("[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000):  # past the parser's stack
        status, detail = _status(lambda: maybe_json(deep))
        assert status == 400 and "deeply" in detail
    assert _status(lambda: parse_json(b"\xff{", "the body"))[0] == 400
    status, detail = _status(lambda: asyncio.run(
        parse_multipart(b"garbage", "multipart/form-data; boundary=XYZ", 1024)))
    assert status == 400 and "multipart" in detail


def test_a_multipart_field_sent_twice_is_400_not_last_one_wins():
    body = b"".join(b'--XYZ\r\nContent-Disposition: form-data; name="labels"\r\n\r\n' + label + b"\r\n"
                    for label in (b"a", b"b")) + b"--XYZ--\r\n"
    status, detail = _status(lambda: asyncio.run(parse_multipart(body, "multipart/form-data; boundary=XYZ", 4096)))
    assert status == 400 and "'labels'" in detail
    once = body.split(b"--XYZ\r\n")[1]
    assert asyncio.run(parse_multipart(b"--XYZ\r\n" + once + b"--XYZ--\r\n", "multipart/form-data; boundary=XYZ",
                                       4096)) == {"labels": "a"}


def test_a_field_the_endpoint_does_not_read_is_refused_by_name():
    refuse_unknown(Small, {"labels": ["a"], "query": "q"}, "media")
    status, detail = _status(lambda: refuse_unknown(Small, {"labels": ["a"], "querry": "q"}, "media_b64"))
    assert status == 422 and "'querry'" in detail and "'media_b64', 'beams', 'segments', 'window', 'labels'" in detail
    status, detail = _status(lambda: refuse_unknown(WithId, {"id": "a", "media": b""}, "media"))
    assert status == 422 and "'media'" in detail  # an endpoint without an upload takes none
    for content in openapi_body(Small)["requestBody"]["content"].values():
        assert content["schema"]["additionalProperties"] is False
