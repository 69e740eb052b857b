"""The ingress's field checks, without Serve: every bad value is a 4xx with the field's name, never
an exception that would be a 500. (tests/integration/serve/test_serve.py sends the same classes of bad
input over HTTP.)"""

import asyncio

import pytest
from fastapi import HTTPException

from pipelines.serve.request_fields import (
    ChoiceField,
    FlagField,
    FloatField,
    IntField,
    RequestBody,
    TextField,
    TextListField,
    maybe_json,
    parse_json,
    parse_multipart,
)

BEAMS = IntField(name="beams", description="", default=1, low=1, high=8)
SEGMENTS = IntField(name="segments", description="", default=None, low=1, high=100)
WINDOW = FloatField(name="window", description="", default=2.0, low=0.1, high=60.0)
LABELS = TextListField(name="labels", description="", limit=2)
QUERY = TextField(name="query", description="", required=False)
ITEM_ID = TextField(name="id", description="")
STRATEGY = ChoiceField(name="strategy", description="", choices=("adaptive", "uniform"), default="adaptive")
POOL = FlagField(name="pool", description="", default=True)


def _status(call) -> tuple[int, str]:
    with pytest.raises(HTTPException) as info:
        call()
    return info.value.status_code, info.value.detail


def _refused(spec, value) -> bool:
    status, detail = _status(lambda: spec.read({spec.name: value}))
    return status == 422 and f"'{spec.name}'" in detail


def test_integers_come_as_numbers_or_form_strings_and_stay_in_range():
    assert BEAMS.read({"beams": "3"}) == 3 == BEAMS.read({"beams": 3})
    assert BEAMS.read({}) == 1
    assert SEGMENTS.read({}) is None and SEGMENTS.read({"segments": "7"}) == 7
    for bad in (True, "3.5", 9, 0, "-1", None, [3]):
        assert _refused(BEAMS, bad), bad


def test_floats_refuse_text_nan_booleans_and_out_of_range():
    assert WINDOW.read({"window": "2.5"}) == 2.5 and WINDOW.read({}) == 2.0
    for bad in ("abc", "nan", "inf", 0.0, None, [1.0], True):
        assert _refused(WINDOW, bad), bad


def test_lists_and_texts():
    assert LABELS.read({"labels": ["a", "b"]}) == ["a", "b"]
    for bad in ([], ["a", "b", "c"], ["a", ""], ["a", 3], "a", None, ["a", "\ud800"]):
        assert _refused(LABELS, bad), bad
    assert QUERY.read({}) is None and QUERY.read({"query": "ü 漢字 \x00"}) == "ü 漢字 \x00"
    assert _refused(QUERY, "  ") and _refused(ITEM_ID, None)
    assert _refused(ITEM_ID, "item-\ud800")  # what JSON's "\ud800" escape decodes to: not valid Unicode


def test_choices_and_flags():
    assert STRATEGY.read({}) == "adaptive" and STRATEGY.read({"strategy": "uniform"}) == "uniform"
    for bad in ("psychic", ["uniform"], None):
        assert _refused(STRATEGY, bad), bad
    assert POOL.read({}) is True
    assert [POOL.read({"pool": v}) for v in (False, "false", "0", " False ", True, "true", "1")] == [False] * 4 + [True] * 3
    for bad in ("no", 0, 1.0, None, []):  # a flag that is not clearly true or false is not guessed
        assert _refused(POOL, bad), bad


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
    body = RequestBody(LABELS, QUERY, media="an image")
    body.refuse_unknown({"labels": ["a"], "query": "q"}, "media")
    status, detail = _status(lambda: body.refuse_unknown({"labels": ["a"], "querry": "q"}, "media_b64"))
    assert status == 422 and "'querry'" in detail and "'media_b64', 'labels', 'query'" in detail
    status, detail = _status(lambda: RequestBody(LABELS).refuse_unknown({"labels": ["a"], "media": b""}, "media"))
    assert status == 422 and "'media'" in detail  # an endpoint without an upload takes none
    for content in body.openapi()["requestBody"]["content"].values():
        assert content["schema"]["additionalProperties"] is False
