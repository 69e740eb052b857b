"""The inference graph on real Ray Serve over HTTP on 127.0.0.1: every endpoint, every class of
bad input, auth on and off, and results equal to the model's direct calls."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time

import jsonschema
import numpy as np
import pytest
import requests
import torch

from model.export import load_model
from model.tasks import rank
from ops.data.frames import decode_media, frames_to_input
from pipelines.cluster.exported_metrics import scrape, settled, summed, wait_for
from pipelines.cluster.net import free_loopback_port
from tests.integration.mlflow_registry import registered_uri
from tests.media_fixtures import clip_bytes, huge_png_header, image_bytes, wide_video_bytes

TOKEN = "s3cret-token"
STREAM_LIMIT = 64  # windows a /v1/stream video may give on the "open" application
LIVE_THRESHOLD = 0.05  # the online rule's variance: the test model's embeddings change this much between events



SYNTHETIC = 1200  # rows of the "open" application's index: enough for an ANN index of PARTITIONS partitions
PARTITIONS = 4  # (LanceDB trains fewer than asked on fewer rows)


@pytest.fixture(scope="module")
def open_index(captioning_model_dir, tmp_path_factory):
    """The "open" application's index: synthetic clustered vectors of the model's width, stored as
    the model's (its fingerprint), under an ANN index (IVF_RQ) of PARTITIONS partitions; clients add to it."""
    from ops.retrieval.table import model_fingerprint
    from tests.retrieval_tables import clustered, write_table

    index = tmp_path_factory.mktemp("open-index")
    from ops.retrieval.table import ann_stats

    table = write_table(str(index), clustered(SYNTHETIC, 384, clusters=6, seed=7),
                        [f"synthetic/{i:04d}" for i in range(SYNTHETIC)],
                        fingerprint=model_fingerprint(captioning_model_dir), partitions=PARTITIONS)
    assert ann_stats(table.to_lance(), "vector_idx")["partitions"] == PARTITIONS
    return index


@pytest.fixture(scope="module")
def cache_index(ray_instance, caches, captioning_model_dir, tmp_path_factory):
    """The "secure" application's index: `vljepa index-build` of the eval and train caches."""
    from pipelines.retrieval import index_build

    index = tmp_path_factory.mktemp("cache-index")
    assert index_build.main(["--model", str(captioning_model_dir), "--cache", str(caches / "eval"),
                             "--cache", str(caches / "train"), "--index", str(index)]) == 0
    return index


@pytest.fixture(scope="module")
def registry_model(captioning_model_dir, tmp_path_factory):
    """(models:/served-plain/VERSION, its tracking URI): the served weights without the Y-decoder,
    registered in an MLflow store of their own."""
    plain_dir = tmp_path_factory.mktemp("served") / "model"
    shutil.copytree(captioning_model_dir, plain_dir, ignore=shutil.ignore_patterns("y_decoder"))
    tracking_uri = f"sqlite:///{plain_dir.parent / 'mlflow.db'}"
    return registered_uri(plain_dir, tracking_uri, "served-plain"), tracking_uri


@pytest.fixture(scope="module")
def served(ray_instance, caches, captioning_model_dir, open_index, cache_index, registry_model, tmp_path_factory):
    """Two applications over the same VL-JEPA weights: "open" (no token, 1 MB limit, 64 stream
    windows, a synthetic index with an ANN index, clients adding to it) with a Y-decoder, from its
    directory; "secure" (token, the caches' index named by a relative path, read by 2 replicas)
    without one, from an MLflow registry URI, which every replica resolves for itself."""
    from ray import serve

    from pipelines.serve.app import build_app
    from pipelines.serve.args import ServeAppArgs

    model_dir = captioning_model_dir
    plain_uri, tracking_uri = registry_model
    port = free_loopback_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(ServeAppArgs(model=str(model_dir), num_cpus=0, max_request_mb=1, max_stream_windows=STREAM_LIMIT,
                                     index=str(open_index))),
              name="open", route_prefix="/")
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(TOKEN)
    # The Ray instance started without MLFLOW_TRACKING_URI: the replicas learn it from the builder.
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    # the index named relative to the builder's directory, as `vljepa serve --index cache-index` run
    # beside it: the index replicas, in working directories of their own, get an absolute path
    cwd = os.getcwd()
    os.chdir(cache_index.parent)
    try:
        serve.run(build_app(ServeAppArgs(model=plain_uri, num_cpus=0, token_file=str(token_file),
                                         index=cache_index.name, index_replicas=2)),
                  name="secure", route_prefix="/secure")
    finally:
        os.chdir(cwd)
        del os.environ["MLFLOW_TRACKING_URI"]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while requests.get(f"{base}/healthz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    yield base, load_model(model_dir).eval()
    serve.delete("open")
    serve.delete("secure")
    serve.shutdown()


def _post(url, media=None, timeout=60, **fields):
    files = {"media": ("upload.bin", media)} if media is not None else None
    data = {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in fields.items()}
    return requests.post(url, files=files, data=data if files else None,
                         json=None if files else fields, timeout=timeout)


@pytest.fixture(scope="module")
def documented(served):
    """documented(response, method, path): the response, after checking its JSON against the schema
    the served /openapi.json gives for that path, method and status code."""
    schema = requests.get(f"{served[0]}/openapi.json", timeout=10).json()

    def check(response, method: str, path: str):
        answers = schema["paths"][path.removeprefix("/secure")][method]["responses"]
        assert str(response.status_code) in answers, (path, response.status_code, response.text)
        documented_as = answers[str(response.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**documented_as, "components": schema["components"]})
        return response

    return check


def _direct(model, media: bytes, query: str | None):
    _, frames = decode_media(media, model.config.x_encoder.image_size, model.config.x_encoder.num_frames)
    s_v = model.encode_visual(frames_to_input(frames)[None])
    return model.embed_visual(s_v, [query if query is not None else ""])[0]


def test_classify_and_vqa_equal_direct_model_calls(served, documented):
    base, model = served
    clip = clip_bytes()
    labels = ["a red ball moves left", "a blue cube moves up", "a green triangle moves down"]
    response = _post(f"{base}/v1/classify", clip, labels=labels)
    assert response.status_code == 200, response.text
    documented(response, "post", "/v1/classify")
    expected = rank(_direct(model, clip, None)[None], model.embed_texts(labels))
    assert [r["label"] for r in response.json()["ranking"]] == [labels[i] for i in expected.indices[0].tolist()]
    assert response.json()["ranking"][0]["score"] == pytest.approx(float(expected.scores[0, 0]), abs=1e-4)

    question, candidates = "Which way does the object move?", ["left", "right", "up", "down"]
    answered = requests.post(f"{base}/v1/vqa", json={"media_b64": base64.b64encode(clip).decode(),
                                                     "question": question, "candidates": candidates}, timeout=60)
    assert answered.status_code == 200, answered.text
    documented(answered, "post", "/v1/vqa")
    expected = rank(_direct(model, clip, question)[None], model.embed_texts(candidates))
    assert answered.json()["answer"] == candidates[int(expected.indices[0, 0])]


def test_probe_searches_more_partitions_and_is_refused_above_the_indexs(served, documented, open_index):
    """The open index has an ANN index of PARTITIONS partitions: probing them all finds most of
    the exact top 10 (compressed distances, the server's default refine); more is a 422.
    First of the index's tests: no client has written to the index yet, so no compaction has
    merged partitions (LanceDB merges small ones when it brings the index up to date)."""
    from ops.retrieval.table import open_table
    from tests.retrieval_tables import exact_ranking

    base, model = served
    query = model.embed_texts(["a green triangle"])[0].numpy()
    table = open_table(str(open_index)).to_arrow()
    vectors = np.stack([np.asarray(v, dtype=np.float32) for v in table["vector"].to_pylist()])
    exact = [i for i, _ in exact_ranking(vectors, table["id"].to_pylist(), query)[:10]]
    everywhere = _post(f"{base}/v1/retrieve", query="a green triangle", k=10, probe=PARTITIONS)
    found = [hit["id"] for hit in documented(everywhere, "post", "/v1/retrieve").json()["results"]]
    assert len(found) == 10 and len(set(found) & set(exact)) >= 8
    refused = documented(_post(f"{base}/v1/retrieve", query="a green triangle", k=10, probe=PARTITIONS + 1),
                         "post", "/v1/retrieve")
    assert refused.status_code == 422
    assert refused.json()["detail"] == f"probe {PARTITIONS + 1} exceeds the index's {PARTITIONS} partitions"
    assert _post(f"{base}/v1/retrieve", query="a green triangle", k=0).status_code == 422
    assert _post(f"{base}/v1/retrieve", query="a green triangle", k=1001).status_code == 422


def _searched(index, query, k, **search) -> list[dict]:
    from tests.unit.retrieval.test_retrieval_table import searched

    return searched(str(index), query, k, refine=10, **search)  # the server's default refine


def test_embeddings_and_retrieval_index(served, documented, open_index):
    base, model = served
    texts = ["a red ball", "a blue cube"]
    embedded = documented(_post(f"{base}/v1/embed/text", texts=texts), "post", "/v1/embed/text").json()["embeddings"]
    torch.testing.assert_close(torch.tensor(embedded), model.embed_texts(texts), atol=1e-5, rtol=1e-5)
    media = documented(_post(f"{base}/v1/embed/media", image_bytes("png"), query="What is shown?"),
                       "post", "/v1/embed/media").json()
    assert media["kind"] == "image" and len(media["embedding"]) == model.config.embed_dim

    for item_id, data in (("http/clip-a", clip_bytes(seed=1)), ("http/clip-b", clip_bytes(seed=2)),
                          ("http/photo", image_bytes())):
        added = _post(f"{base}/v1/index/items", data, id=item_id)
        assert documented(added, "post", "/v1/index/items").status_code == 200
    listed = documented(requests.get(f"{base}/v1/index/items", params={"prefix": "http/"}, timeout=30),
                        "get", "/v1/index/items")
    assert [i["id"] for i in listed.json()["items"]] == ["http/clip-a", "http/clip-b", "http/photo"]  # as added
    assert listed.json()["total"] == 3 and listed.json()["next_offset"] is None
    assert listed.json()["items"][2] == {"id": "http/photo", "kind": "image", "caption": None, "source": None}
    pages = [documented(requests.get(f"{base}/v1/index/items", params={"prefix": "http/", **page}, timeout=30),
                        "get", "/v1/index/items")
             for page in ({"limit": 2}, {"offset": 2, "limit": 2}, {"limit": 0}, {"limit": 2, "ofset": 1})]
    assert [i["id"] for i in pages[0].json()["items"]] == ["http/clip-a", "http/clip-b"]
    assert pages[0].json()["next_offset"] == 2
    assert [i["id"] for i in pages[1].json()["items"]] == ["http/photo"] and pages[1].json()["next_offset"] is None
    assert [p.status_code for p in pages[2:]] == [422, 422]  # a limit out of range; a misspelt parameter
    assert requests.get(f"{base}/v1/index/items", timeout=30).json()["total"] == SYNTHETIC + 3
    found = documented(_post(f"{base}/v1/retrieve", query="a red ball moves left", k=2, prefix="http/"),
                       "post", "/v1/retrieve")
    results = found.json()["results"]
    assert len(results) == 2 and results[0]["score"] >= results[1]["score"]
    path = "/v1/index/items/{item_id}"
    assert documented(requests.delete(f"{base}/v1/index/items/http/photo", timeout=30), "delete", path).status_code == 200
    assert documented(requests.delete(f"{base}/v1/index/items/http/photo", timeout=30), "delete", path).status_code == 404
    listed = requests.get(f"{base}/v1/index/items", params={"prefix": "http/"}, timeout=30).json()["items"]
    assert [i["id"] for i in listed] == ["http/clip-a", "http/clip-b"]
    # the adds and the delete are in the table itself: another process reading it finds what the server answers
    from ops.retrieval.table import open_table

    held = {row["id"] for row in open_table(str(open_index)).to_arrow().select(["id"]).to_pylist()}
    assert {"http/clip-a", "http/clip-b"} <= held and "http/photo" not in held and len(held) == SYNTHETIC + 2
    query = model.embed_texts(["a red ball moves left"])[0].numpy()
    served_now = _post(f"{base}/v1/retrieve", query="a red ball moves left", k=5).json()["results"]
    expected = _searched(open_index, query, 5)
    assert [hit["id"] for hit in served_now] == [hit["id"] for hit in expected]
    assert [hit["score"] for hit in served_now] == pytest.approx([hit["score"] for hit in expected], abs=1e-6)


@pytest.mark.parametrize("case, status", [
    ("non_media", 415), ("truncated_video", 422), ("huge_image", 422), ("wide_video", 422), ("oversize", 413),
    ("no_labels", 422), ("too_many_labels", 422), ("long_query", 422), ("bad_json", 400),
    ("wrong_type", 422), ("no_media", 422), ("bad_base64", 400), ("misspelt_field", 422), ("media_as_text", 422),
    ("deep_json", 400), ("deep_form_field", 400), ("empty_media", 422), ("empty_media_b64", 422),
])
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(served, documented, case, status):
    base, _ = served
    url = f"{base}/v1/classify"
    labels = ["a", "b"]
    if case == "non_media":
        response = _post(url, b"just some text, not media", labels=labels)
    elif case == "truncated_video":
        response = _post(url, clip_bytes()[:700], labels=labels)
    elif case == "huge_image":
        response = _post(url, huge_png_header(), labels=labels)
    elif case == "wide_video":
        response = _post(url, wide_video_bytes(), labels=labels)
    elif case == "oversize":
        response = _post(url, b"\xff\xd8\xff" + b"0" * (2 * 2**20), labels=labels)  # the test app allows 1 MiB
    elif case == "no_labels":
        response = _post(url, image_bytes(), labels=[])
    elif case == "too_many_labels":
        response = _post(url, image_bytes(), labels=[f"l{i}" for i in range(300)])
    elif case == "long_query":
        response = _post(url, image_bytes(), labels=labels, query="word " * 600)
    elif case == "bad_json":
        response = requests.post(url, data=b"{not json", headers={"content-type": "application/json"}, timeout=30)
    elif case == "wrong_type":
        response = requests.post(url, json={"media_b64": base64.b64encode(image_bytes()).decode(), "labels": "a"}, timeout=30)
    elif case == "no_media":
        response = requests.post(url, json={"labels": labels}, timeout=30)
    elif case == "misspelt_field":  # dropping it would serve the request with the default query
        response = _post(url, image_bytes(), labels=labels, querry="What colour is it?")
    elif case == "deep_json":  # nests past the JSON parser's stack
        response = requests.post(url, data=b"[" * 5000, headers={"content-type": "application/json"}, timeout=30)
    elif case == "deep_form_field":
        response = _post(url, image_bytes(), labels="[" * 5000)
    elif case == "empty_media":
        response = _post(url, b"", labels=labels)
    elif case == "empty_media_b64":
        response = requests.post(url, json={"media_b64": "", "labels": labels}, timeout=30)
    elif case == "media_as_text":  # a form field, not a file part
        response = requests.post(url, files={"media": (None, "hello"), "labels": (None, json.dumps(labels))}, timeout=30)
    else:
        response = requests.post(url, json={"media_b64": "***", "labels": labels}, timeout=30)
    assert response.status_code == status, response.text
    assert documented(response, "post", "/v1/classify").json()["detail"]
    if case.startswith("empty_media"):  # said as such, not "no media: send ..."
        assert response.json()["detail"].startswith("the media is empty (0 bytes)")
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
    assert _post(url, image_bytes(), labels=labels).status_code == 200


def test_the_applications_metrics_reach_prometheus(served, metrics_port):
    """Media decoded and refused, label cache hits and misses, and the index shards' items, as Ray's
    metrics agent exports them (pipelines/serve/metrics.py), counted from this test's own requests."""
    base, _ = served
    app = {"application": "open"}

    def reaches(name: str, expected: float, **labels: str) -> float:
        return wait_for(metrics_port, f"ray_vljepa_{name}", lambda value: value >= expected, **app, **labels)

    # the earlier tests' requests, all pushed to the agent first: the baseline this test's requests add to
    baseline = settled(metrics_port, "ray_vljepa_", quiet_s=3.0)

    def counted(name: str, **labels: str) -> float:
        return summed(baseline, f"ray_vljepa_{name}", **app, **labels)

    before = {"video": counted("media_decoded_total", kind="video"), "image": counted("media_decoded_total", kind="image"),
              "not_media": counted("media_rejected_total", reason="not_media"),
              "image_too_large": counted("media_rejected_total", reason="image_too_large"),
              "hit": counted("label_cache_lookups_total", outcome="hit"),
              "miss": counted("label_cache_lookups_total", outcome="miss"),
              "timed": counted("media_decode_seconds_count", kind="video")}
    labels = [f"metrics label {i} {time.monotonic_ns()}" for i in range(3)]  # never asked before: misses first
    for media in (clip_bytes(), clip_bytes(), image_bytes()):
        assert _post(f"{base}/v1/classify", media, labels=labels).status_code == 200
    assert _post(f"{base}/v1/classify", b"just some text, not media", labels=labels).status_code == 415
    assert _post(f"{base}/v1/classify", huge_png_header(), labels=labels).status_code == 422

    assert reaches("media_decoded_total", before["video"] + 2, kind="video") == before["video"] + 2
    assert reaches("media_decoded_total", before["image"] + 1, kind="image") == before["image"] + 1
    # a histogram's _count: how many decodes were observed (one per video), not how long they took
    decodes_observed = "media_decode_seconds_count"
    assert reaches(decodes_observed, before["timed"] + 2, kind="video") == before["timed"] + 2
    assert reaches("media_rejected_total", before["not_media"] + 1, reason="not_media") == before["not_media"] + 1
    assert reaches("media_rejected_total", before["image_too_large"] + 1,
                   reason="image_too_large") == before["image_too_large"] + 1
    # the first request's labels miss the cache, the next two requests hit it
    assert reaches("label_cache_lookups_total", before["miss"] + 3, outcome="miss") == before["miss"] + 3
    assert reaches("label_cache_lookups_total", before["hit"] + 6, outcome="hit") == before["hit"] + 6

    # the secure application's index table, as its replicas report it, and the searches they answered
    auth = {"Authorization": f"Bearer {TOKEN}"}
    listed = requests.get(f"{base}/secure/v1/index/items?limit=1", headers=auth, timeout=30).json()["total"]
    secure = {"application": "secure"}
    searches = summed(scrape(metrics_port), "ray_vljepa_index_search_seconds_count", **secure)
    for _ in range(3):
        assert requests.post(f"{base}/secure/v1/retrieve", json={"query": "a red ball"}, headers=auth,
                             timeout=30).status_code == 200
    assert wait_for(metrics_port, "ray_vljepa_index_search_seconds_count", lambda n: n >= searches + 3,
                    **secure) == searches + 3
    samples = scrape(metrics_port)
    rows = {labels["replica"]: value for name, labels, value in samples
            if name == "ray_vljepa_index_rows" and labels.get("application") == "secure"}
    assert len(rows) == 2 and set(rows.values()) == {listed} and listed > 0  # each of the 2 replicas reads the table
    unindexed = [value for name, labels, value in samples
                 if name == "ray_vljepa_index_unindexed_rows" and labels.get("application") == "secure"]
    assert set(unindexed) == {listed}  # no ANN index on so few rows: every row searched exactly


def test_token_protects_everything_but_health(served, documented):
    base, _ = served
    secure = f"{base}/secure"
    assert documented(requests.get(f"{secure}/healthz", timeout=10), "get", "/healthz").status_code == 200
    assert documented(requests.get(f"{secure}/readyz", timeout=30), "get", "/readyz").status_code == 401
    assert documented(_post(f"{secure}/v1/embed/text", texts=["a"]), "post", "/v1/embed/text").status_code == 401
    wrong = requests.post(f"{secure}/v1/embed/text", json={"texts": ["a"]}, timeout=30,
                          headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = requests.post(f"{secure}/v1/embed/text", json={"texts": ["a"]}, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    ready = requests.get(f"{secure}/readyz", timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ready.status_code == 200, ready.text  # its model deployments and its index answer
    ready = documented(requests.get(f"{base}/readyz", timeout=30), "get", "/readyz")
    assert ready.status_code == 200  # the open app needs none


def test_readiness_waits_for_every_model_deployment(served, documented, captioning_model_dir):
    """An application whose decoder replica cannot be placed (it asks for a GPU this machine lacks):
    its ingress answers, but /readyz says 503 and names the decoder, where it used to say ready
    (it asked the text deployment only) while /v1/caption hung."""
    from ray import serve

    from pipelines.serve.app import build_app
    from pipelines.serve.args import ServeAppArgs

    base, _ = served
    # serve.run waits for the application to be running, which this one never is: deploy without waiting
    serve._run(build_app(ServeAppArgs(model=str(captioning_model_dir), num_cpus=0, decoder_num_gpus=1)),
               name="unplaced", route_prefix="/unplaced", _blocking=False)
    try:
        deadline = time.monotonic() + 120
        while True:  # the ingress and the other model replicas start; the decoder never does
            assert time.monotonic() < deadline
            # the first request waits in the proxy for the ingress replica to start: 26-31 s on 2 busy cores
            ready = requests.get(f"{base}/unplaced/readyz", timeout=120)
            if ready.status_code == 503 and "decoder" in ready.text and "visual" not in ready.text:
                break
            assert ready.status_code in (404, 503), ready.text  # 404: its route not up yet
            time.sleep(1)
        documented(ready, "get", "/readyz")
        assert ready.json()["detail"].startswith("not ready: the decoder deployment(s) do not answer within 5 s")
        assert requests.get(f"{base}/unplaced/healthz", timeout=10).status_code == 200
    finally:
        serve.delete("unplaced")
    assert requests.get(f"{base}/readyz", timeout=30).status_code == 200  # the other applications are unaffected


def test_replicas_of_a_registry_model_share_one_download(served, registry_model):
    """The "secure" app names models:/served-plain/VERSION: the builder and its three model-loading
    replicas (ingress, visual, text) resolved it on this machine into one directory, no staging left
    over. Other tests' downloads in the same VLJEPA_HOME (other URIs, other stores) are not counted."""
    from pipelines.models.source import download_dir

    uri, tracking_uri = registry_model
    final = download_dir(uri, tracking_uri, tracking_uri)
    copies = sorted(p.name for p in final.parent.iterdir() if p.name.startswith(final.name))
    assert copies == [final.name] and final.is_dir(), copies


def test_index_changes_survive_a_restart_of_the_index(served, captioning_model_dir, open_index):
    """An add and a delete, then the index deployment replaced (other settings: Serve starts a new
    replica and stops the old): the new replica, with nothing but the table, answers as before."""
    from ray import serve

    from pipelines.serve.app import build_app
    from pipelines.serve.args import ServeAppArgs

    base, _ = served
    assert _post(f"{base}/v1/index/items", clip_bytes(seed=5), id="http/before-restart").status_code == 200
    assert requests.delete(f"{base}/v1/index/items/synthetic/0007", timeout=30).status_code == 200
    listed = requests.get(f"{base}/v1/index/items", params={"limit": 10_000}, timeout=30).json()
    found = _post(f"{base}/v1/retrieve", query="a red ball", k=5).json()["results"]
    serve.run(build_app(ServeAppArgs(model=str(captioning_model_dir), num_cpus=0, max_request_mb=1,
                                     max_stream_windows=STREAM_LIMIT, index=str(open_index), index_refresh_s=0.1)),
              name="open", route_prefix="/")
    assert requests.get(f"{base}/v1/index/items", params={"limit": 10_000}, timeout=30).json() == listed
    assert _post(f"{base}/v1/retrieve", query="a red ball", k=5).json()["results"] == found
    assert requests.delete(f"{base}/v1/index/items/http/before-restart", timeout=30).status_code == 200
    assert requests.delete(f"{base}/v1/index/items/synthetic/0007", timeout=30).status_code == 404


def test_index_built_from_a_feature_cache_ranks_like_the_model(served, caches, cache_index):
    from ops.evaluate.zero_shot import load_rows
    from ops.retrieval.table import open_table
    from tests.retrieval_tables import exact_ranking

    base, model = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rows = [{**r, "id": f"{name}/{r['shard']}/{r['key']}"} for name in ("eval", "train")
            for r in load_rows(str(caches / name)) if r["media_kind"] == "video" and r["task"] == "caption"]
    items = requests.get(f"{base}/secure/v1/index/items", params={"limit": 1000}, headers=auth, timeout=30).json()
    assert {i["id"] for i in items["items"]} == {r["id"] for r in rows} and items["total"] == len(rows)
    shards = [{r["shard"] for r in rows if r["id"].startswith(f"{name}/")} for name in ("eval", "train")]
    assert shards[0] & shards[1], shards  # what ids of `shard/key` alone would have collided on

    # the model's ranking: its text embedding against the videos' Ŝ_Y as the table keeps them
    query = rows[0]["target"]
    found = requests.post(f"{base}/secure/v1/retrieve", json={"query": query, "k": 3}, headers=auth, timeout=30).json()
    table = open_table(str(cache_index)).to_arrow()
    stored = dict(zip(table["id"].to_pylist(), table["vector"].to_pylist()))
    ids = [r["id"] for r in rows]
    vectors = np.stack([np.asarray(stored[i], dtype=np.float32) for i in ids])
    ranked = [i for i, _ in exact_ranking(vectors, ids, model.embed_texts([query])[0].numpy())]
    assert [r["id"] for r in found["results"]] == ranked[:3]
    # one cache's videos: `prefix` ranks and lists among that cache's items only
    in_train = requests.post(f"{base}/secure/v1/retrieve", json={"query": query, "k": 3, "prefix": "train/"},
                             headers=auth, timeout=30).json()["results"]
    assert [r["id"] for r in in_train] == [i for i in ranked if i.startswith("train/")][:3]
    # searches at once, spread over the index's 2 replicas: each gets its own k and prefix's ranking
    from concurrent.futures import ThreadPoolExecutor

    asks = [{"query": query, "k": 2 + i % 3, **({"prefix": "train/"} if i % 2 else {})} for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda ask: requests.post(f"{base}/secure/v1/retrieve", json=ask, headers=auth,
                                                          timeout=120), asks))
    for ask, answer in zip(asks, answers):
        expected = [i for i in ranked if i.startswith(ask.get("prefix", ""))]
        assert answer.status_code == 200 and [r["id"] for r in answer.json()["results"]] == expected[: ask["k"]], ask
    listed = requests.get(f"{base}/secure/v1/index/items", params={"prefix": "eval/", "limit": 5}, headers=auth,
                          timeout=30).json()
    assert listed["total"] == sum(r["id"].startswith("eval/") for r in rows) < len(rows)
    assert len(listed["items"]) == 5 and all(i["id"].startswith("eval/") for i in listed["items"])
    assert all(i["source"] == "eval" and i["caption"] for i in listed["items"])
    # pages of the listing cover every item once
    paged = [item["id"] for offset in range(0, len(rows), 7) for item in requests.get(
        f"{base}/secure/v1/index/items", params={"offset": offset, "limit": 7}, headers=auth, timeout=30).json()["items"]]
    assert sorted(paged) == sorted(ids)

    # Their ids are `cache/shard/key`: DELETE takes the slashes as part of the id (a path parameter stops at one).
    best = found["results"][0]["id"]
    deleted = requests.delete(f"{base}/secure/v1/index/items/{best}", headers=auth, timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"deleted": best}, deleted.text
    remaining = requests.get(f"{base}/secure/v1/index/items", headers=auth, timeout=30).json()["items"]
    assert len(remaining) == len(rows) - 1 and best not in {i["id"] for i in remaining}


def test_caption_and_stream_equal_direct_decoding(served, documented, captioning_model_dir):
    from model.y_decoder_export import load_y_decoder
    from ops.data.long_stream import LongStreamConfig, make_long_stream
    from ops.decode.selective_decoding import DecodePlan, stream_events
    from ops.decode.stream_windows import WindowSpec

    base, model = served
    decoder = load_y_decoder(captioning_model_dir).eval()
    clip = clip_bytes()
    response = _post(f"{base}/v1/caption", clip)
    assert response.status_code == 200, response.text
    documented(response, "post", "/v1/caption")
    assert response.json() == {"kind": "video", "text": decoder.generate(_direct(model, clip, None)[None])[0]}
    beams = _post(f"{base}/v1/caption", image_bytes(), beams=3, query="What is it?")
    assert beams.status_code == 200 and beams.json()["kind"] == "image"

    video, _ = make_long_stream(LongStreamConfig(num_events=3, min_seconds=3.0, max_seconds=4.0, frame_size=64))
    # a 0.25 s stride gives 36 windows here: more than one chunk of 32, so the ingress pipelines two
    streamed = _post(f"{base}/v1/stream", video, segments=3, strategy="adaptive", stride=0.25, timeout=120)
    assert streamed.status_code == 200, streamed.text
    documented(streamed, "post", "/v1/stream")
    spec = WindowSpec(stride_s=0.25, num_frames=model.config.x_encoder.num_frames,
                      image_size=model.config.x_encoder.image_size)
    direct = stream_events(model, decoder, video, spec, DecodePlan(segments=3), query="")
    assert 32 < streamed.json()["windows"] == direct["windows"] <= STREAM_LIMIT
    assert [e["start"] for e in streamed.json()["events"]] == [e["start"] for e in direct["events"]]
    assert [e["text"] for e in streamed.json()["events"]] == [e["text"] for e in direct["events"]]


@pytest.mark.parametrize("fields, media, status", [
    ({}, "image", 415),  # a still image is not a stream
    ({"strategy": "psychic"}, "video", 422),
    ({"segments": 0}, "video", 422),
    ({"pool": "maybe"}, "video", 422),
    ({"window": "wide"}, "video", 422),
    ({}, "truncated", 422),
])
def test_bad_stream_requests_get_a_4xx(served, documented, fields, media, status):
    base, _ = served
    payload = {"image": image_bytes(), "video": clip_bytes(), "truncated": clip_bytes()[:400]}[media]
    response = _post(f"{base}/v1/stream", payload, **fields)
    assert response.status_code == status, response.text
    documented(response, "post", "/v1/stream")
    assert _post(f"{base}/v1/caption", payload, beams=99).status_code == 422
    assert _post(f"{base}/v1/caption", image_bytes()).json()["text"]  # still serving: the models answer


def test_a_stream_over_the_window_limit_gets_a_422(served):
    from ops.data.long_stream import LongStreamConfig, make_long_stream

    base, _ = served
    video, _ = make_long_stream(LongStreamConfig(num_events=3, min_seconds=3.0, max_seconds=4.0, frame_size=64))
    response = _post(f"{base}/v1/stream", video, stride=0.1)  # 72 windows (8 fps: one frame apart)
    assert response.status_code == 422, response.text
    assert f"more than the {STREAM_LIMIT} allowed" in response.json()["detail"]
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200


def test_a_live_feed_gets_the_events_of_the_same_video_uploaded(served):
    """WebSocket /v1/live fed a recorded video's frames at its rate, with two bad frames among them:
    each bad frame refused with its number, the rest go on, and the events are /v1/stream's for that
    video with strategy=online."""
    from ops.data.long_stream import LongStreamConfig, make_long_stream
    from pipelines.decode.live_client import live_url, send_live, video_frames

    base, _ = served
    video, _ = make_long_stream(LongStreamConfig(num_events=3, min_seconds=3.0, max_seconds=4.0, frame_size=64))
    params = {"stride": 0.25, "threshold": LIVE_THRESHOLD, "pool": False}
    uploaded = _post(f"{base}/v1/stream", video, strategy="online", timeout=120, **params)
    assert uploaded.status_code == 200, uploaded.text
    frames, fps = video_frames(video)
    frames = list(frames)
    fed = frames[:5] + [b"not an image"] + frames[5:20] + [image_bytes("png")[:200]] + frames[20:]
    live = send_live(live_url(base, fps=fps, **params), fed)
    assert live.close_code == 1000 and live.events == uploaded.json()["events"]
    assert len(live.events) >= 2, live  # the threshold sees the changes between events
    assert [(e["status"], e["frame"]) for e in live.errors] == [(415, 5), (422, 21)]
    assert live.summary == {"windows": uploaded.json()["windows"], "frames": len(frames), "refused": 2,
                            "events": len(live.events)}


def test_vljepa_live_prints_each_event_as_it_arrives(served, tmp_path, capsys):
    """`vljepa live` from a recording and from a folder of its frames: the events /v1/stream gives,
    each printed as it came, then the summary; a server that refuses the feed is a 1 and says why."""
    from ops.data.long_stream import LongStreamConfig, make_long_stream
    from pipelines.decode import live
    from pipelines.decode.live_client import video_frames

    base, _ = served
    video, _ = make_long_stream(LongStreamConfig(num_events=3, min_seconds=3.0, max_seconds=4.0, frame_size=64))
    (tmp_path / "stream.mp4").write_bytes(video)
    uploaded = _post(f"{base}/v1/stream", video, strategy="online", stride=0.25, threshold=LIVE_THRESHOLD, timeout=120)
    assert uploaded.status_code == 200, uploaded.text
    frames, _ = video_frames(video)
    (tmp_path / "frames").mkdir()
    for n, frame in enumerate(frames):
        (tmp_path / "frames" / f"{n:05d}.png").write_bytes(frame)
    rule = ["--server", base, "--stride", "0.25", "--threshold", str(LIVE_THRESHOLD), "--json"]
    for source in (["--video", str(tmp_path / "stream.mp4")], ["--frames", str(tmp_path / "frames"), "--fps", "8"]):
        assert live.main([*source, *rule]) == 0
        lines = capsys.readouterr().out.splitlines()
        answered = json.loads(lines[-1])
        assert answered["events"] == uploaded.json()["events"] and answered["refused"] == 0, source
        printed = [line for line in lines if line.endswith(tuple(e["text"] for e in answered["events"]))]
        assert len(printed) == len(answered["events"]) >= 2 and lines.index(printed[-1]) < len(lines) - 2

    assert live.main(["--video", str(tmp_path / "stream.mp4"), "--server", f"{base}/secure"]) == 1
    assert "HTTP 403" in capsys.readouterr().err
    (tmp_path / "token").write_text(TOKEN)
    assert live.main(["--video", str(tmp_path / "stream.mp4"), "--server", f"{base}/secure",
                      "--token-file", str(tmp_path / "token")]) == 1
    assert "501 this model has no Y-decoder" in capsys.readouterr().err


def test_live_sessions_that_cannot_go_on_are_told_why(served):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from pipelines.decode.live_client import live_url, send_live

    base, _ = served
    with pytest.raises(InvalidStatus) as denied:  # a token configured: no handshake without it
        send_live(live_url(f"{base}/secure", fps=8), [])
    assert denied.value.response.status_code == 403
    no_decoder = send_live(live_url(f"{base}/secure", fps=8), [], token=TOKEN)
    assert no_decoder.close_code == 1008 and no_decoder.errors[0]["status"] == 501
    for params, says in [({}, "'fps' is required"), ({"fps": 8, "segmnts": 3}, "unknown field 'segmnts'"),
                         ({"fps": 0}, "'fps' must be between"), ({"fps": 8, "window": 0.5}, "window_too_short")]:
        refused = send_live(live_url(base, **params), [image_bytes("png")])
        assert refused.close_code == 1008 and says in refused.close_reason, (params, refused)
        assert refused.errors == [{"error": refused.errors[0]["error"], "status": 422}] and not refused.events
    with connect(live_url(base, fps=8)) as socket:  # a text message other than the end: told, and the session goes on
        socket.send("hello")
        assert json.loads(socket.recv(timeout=30))["status"] == 400
        socket.send(json.dumps({"end": True}))
        assert json.loads(socket.recv(timeout=30)) == {"windows": 0, "frames": 0, "refused": 0, "events": 0}
    nothing = send_live(live_url(base, fps=8), [image_bytes("png")] * 3)  # fewer frames than a window samples
    assert nothing.close_code == 1000 and nothing.summary == {"windows": 0, "frames": 3, "refused": 0, "events": 0}
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200


def test_a_model_without_decoder_says_so(served, documented):
    base, _ = served
    response = _post(f"{base}/secure/v1/caption", clip_bytes())
    assert response.status_code == 401  # auth first
    response = requests.post(f"{base}/secure/v1/caption", timeout=30, headers={"Authorization": f"Bearer {TOKEN}"},
                             json={"media_b64": base64.b64encode(clip_bytes()).decode()})
    assert response.status_code == 501 and "train-decoder" in response.json()["detail"]
    documented(response, "post", "/v1/caption")


SWEEP_VALUES = [None, -1, 1e308, True, "", " ", "x" * 3000, [], [None], ["a"] * 300, {"a": 1}, "\ud800"]
GOOD_VALUES = {"texts": ["a red ball"], "labels": ["a red ball", "a blue cube"], "question": "What moves?",
               "candidates": ["left", "right"], "id": "sweep-item", "query": "a red ball"}


def test_no_value_of_any_field_gets_a_5xx_or_harms_later_requests(served, documented):
    """Every field of every endpoint (read from the served schema) set in turn to each value above,
    the rest valid: a documented 4xx or a 200, never a 5xx. Then the server answers as before: one
    bad request once left an item the index could not serialise, and every later search was a 500."""
    base, _ = served
    schema = requests.get(f"{base}/openapi.json", timeout=10).json()
    before = {i["id"] for i in requests.get(f"{base}/v1/index/items", params={"limit": 10_000},
                                            timeout=30).json()["items"]}
    statuses = []
    for path, methods in schema["paths"].items():
        if "post" not in methods:
            continue
        body = methods["post"]["requestBody"]["content"]["application/json"]["schema"]
        upload = {"media_b64": base64.b64encode(clip_bytes() if path == "/v1/stream" else image_bytes()).decode()}
        valid = {name: (upload | GOOD_VALUES)[name] for name in body["required"]}
        for name, value in ((n, v) for n in body["properties"] for v in SWEEP_VALUES):
            sent = json.dumps({**valid, name: value}).encode("utf-8", "surrogatepass")  # "\ud800" as JSON spells it
            response = requests.post(f"{base}{path}", data=sent, headers={"content-type": "application/json"},
                                     timeout=120)
            assert response.status_code < 500, (path, name, repr(value)[:40], response.text)
            documented(response, "post", path)
            statuses.append(response.status_code)
    assert statuses.count(200) and statuses.count(422) > len(statuses) / 2  # the sweep reached both answers

    listed = requests.get(f"{base}/v1/index/items", params={"limit": 10_000}, timeout=30)
    assert listed.status_code == 200, listed.text
    found = _post(f"{base}/v1/retrieve", query="a red ball", k=1000)
    assert found.status_code == 200, found.text
    assert _post(f"{base}/v1/classify", image_bytes(), labels=GOOD_VALUES["labels"]).status_code == 200
    for item in {i["id"] for i in listed.json()["items"]} - before:  # leave the index as the sweep found it
        assert requests.delete(f"{base}/v1/index/items/{item}", timeout=30).status_code == 200


@pytest.mark.parametrize("prefix", ["", "/secure"])
def test_the_api_docs_pages_load_everything_from_the_server(served, prefix):
    """/docs and /redoc work on a cluster that cannot reach a CDN: every script and stylesheet the
    pages name is served by the application itself (FastAPI's own pages loaded them from
    cdn.jsdelivr.net and were blank offline), under the application's route prefix."""
    import re

    base, _ = served
    for page, script in (("docs", "swagger-ui-bundle.js"), ("redoc", "redoc.standalone.js")):
        html = requests.get(f"{base}{prefix}/{page}", timeout=10)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css|png))["']""", html.text)
        assert any(a.endswith(script) for a in assets), assets
        for asset in assets:
            assert asset.startswith(f"{prefix}/docs-static/"), asset  # not a CDN
            fetched = requests.get(f"{base}{asset}", timeout=10)
            assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
        assert f"{prefix}/openapi.json" in html.text
