"""The HTTP ingress of the inference graph (FastAPI on Ray Serve), calling the model deployments
through DeploymentHandles.

Requests carry media either as a multipart upload (field `media`, other fields as form fields,
lists as JSON strings) or as JSON with `media_b64`. Every bad input is a 4xx with a message:
the body size is checked before anything is read or decoded (413), non-media bytes are 415,
undecodable or absurd media 422, malformed JSON or wrong types 400/422, too many or no
candidates 422, a query over the token limit 422. With a token configured, every endpoint but
/healthz needs `Authorization: Bearer <token>` (401).

No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (Request)
at runtime, and string annotations do not survive Serve's class-based ingress wrapping.
"""


import asyncio
import base64
import binascii
import hmac
import time
from dataclasses import dataclass

import numpy as np
from fastapi import HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import HTTPConnection

from model.export import read_manifest
from model.tokenize import count_tokens, load_tokenizer
from ops.data.frames import UnsupportedMedia, decode_media, sniff
from ops.data.samples import SampleError
from ops.decode.segmentation import segment_embeddings, segment_event
from ops.decode.selective_decoding import DecodePlan, plan_segments
from ops.decode.stream_windows import WindowSpec, iter_windows
from pipelines.models.source import resolve_model_dir
from pipelines.retrieval.deployment import ProbeOutOfRange
from pipelines.serve import api_requests as api
from pipelines.serve.api_requests import RequestBody, maybe_json, parse_json, parse_multipart
from pipelines.serve.api_responses import (
    Answer,
    Caption,
    Classification,
    Deleted,
    IndexItem,
    IndexItems,
    MediaEmbedding,
    SearchResults,
    Status,
    StreamEvents,
    TextEmbeddings,
    responses,
)
from pipelines.serve.live import LiveSession, LiveSettings, refuse
from pipelines.serve.metrics import NOT_MEDIA, MediaMetrics


@dataclass(kw_only=True)
class ServeSettings:
    model: str  # an exported model directory or an MLflow URI: every replica resolves it on its own node
    max_request_bytes: int  # checked before a body is read
    max_stream_windows: int  # a stream request embeds at most this many windows
    token: str | None = None


# FastAPIOffline: FastAPI whose /docs (Swagger UI) and /redoc load their JavaScript and CSS from
# files the package ships, served under /docs-static, instead of a CDN a cluster may not reach
# (with FastAPI's own pages they were blank offline; /openapi.json is the same either way).
app = FastAPIOffline(static_url="/docs-static", title="VL-JEPA", version="1", description=(
    "Predicted-embedding vision-language model: embed, classify, answer, retrieve, caption, stream. "
    "Media comes as a multipart file part `media` (other fields as form parts, lists as one JSON-array "
    "part) or base64 in a JSON field `media_b64`. With a token configured, every endpoint but /healthz "
    "needs `Authorization: Bearer <token>`."))
READY_TIMEOUT_S = 5.0  # /readyz: how long a model deployment may take to answer


async def answers(handle: DeploymentHandle) -> bool:
    """Whether the deployment answers `ready()` within READY_TIMEOUT_S; a call left waiting (no
    replica to take it) is cancelled, so probes do not pile up behind a replica that never starts."""
    response = handle.ready.remote()

    async def awaited():
        return await response

    try:
        return await asyncio.wait_for(awaited(), READY_TIMEOUT_S)
    except asyncio.TimeoutError:
        response.cancel()
        return False


# What a request of each kind can be refused with (every endpoint but /healthz: 401 with a token).
TEXT_ERRORS = (400, 401, 413, 422)
MEDIA_ERRORS = (*TEXT_ERRORS, 415)


@serve.deployment(max_ongoing_requests=256)  # it mostly awaits the model deployments
@serve.ingress(app)
class Ingress:
    def __init__(self, visual: DeploymentHandle, text: DeploymentHandle, index: DeploymentHandle | None,
                 settings: ServeSettings, decoder: DeploymentHandle | None = None):
        self.visual, self.text, self.settings = visual, text, settings
        self.index = index  # None: served without --index, so no retrieval
        self.decoder = decoder  # None: the model has no Y-decoder, so no captions or streams
        model_dir = resolve_model_dir(settings.model)
        config = read_manifest(model_dir)["config"]
        self.image_size = config["x_encoder"]["image_size"]
        self.num_frames = config["x_encoder"]["num_frames"]
        self.query_tokenizer = load_tokenizer(f"{model_dir}/predictor")
        self.media_metrics = MediaMetrics()

    # -- plumbing ------------------------------------------------------------------------------
    def authorize(self, request: HTTPConnection) -> None:
        if not self.settings.token:
            return
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.encode(), self.settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    async def body(self, request: Request) -> bytes:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"request body of {declared} bytes exceeds the {limit}-byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():  # also caps bodies sent without a length
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"request body exceeds the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def fields(self, request: Request, body: type[RequestBody]) -> tuple[bytes | None, dict]:
        """Authorise, read the size-checked body, and split it into (the upload's bytes, the other
        fields), refusing fields the endpoint does not read."""
        self.authorize(request)
        raw = await self.body(request)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            upload_field = "media"
            form = await parse_multipart(raw, content_type, self.settings.max_request_bytes)
            media = form.pop(upload_field, None) if body.MEDIA else None
            if media is not None and not isinstance(media, bytes):  # `-F media=text`, not `-F media=@FILE`
                raise HTTPException(422, "'media' must be a file part (curl: -F media=@FILE)")
            fields = {k: maybe_json(v) for k, v in form.items()}
        else:
            upload_field = "media_b64"
            fields = parse_json(raw or b"{}", "the body")
            if not isinstance(fields, dict):
                raise HTTPException(400, "the JSON body must be an object")
            encoded = fields.pop(upload_field, None) if body.MEDIA else None
            if encoded is not None and not isinstance(encoded, str):
                raise HTTPException(422, "'media_b64' must be a base64 string")
            try:
                media = None if encoded is None else base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(400, "media_b64 is not valid base64") from None
        api.refuse_unknown(body, fields, upload_field)
        if body.MEDIA and media == b"":
            raise HTTPException(422, f"the media is empty (0 bytes): '{upload_field}' was sent without content")
        if body.MEDIA and media is None:
            raise HTTPException(422, "no media: send a multipart field 'media' or JSON 'media_b64'")
        return media, fields

    async def frames(self, media: bytes) -> tuple[str, np.ndarray]:
        """Decode off the event loop: a blocking decode here would serialise every request."""
        started = time.perf_counter()
        try:
            kind, frames = await asyncio.to_thread(decode_media, media, self.image_size, self.num_frames)
        except UnsupportedMedia as exc:
            self.media_metrics.rejected_one(NOT_MEDIA)
            raise HTTPException(415, str(exc)) from None
        except SampleError as exc:
            self.media_metrics.rejected_one(exc.reason)
            raise HTTPException(422, f"{exc.reason}: {exc.message}") from None
        self.media_metrics.decoded_one(kind, time.perf_counter() - started)
        return kind, frames

    def query(self, query: str | None, name: str = "query") -> str | None:
        """A query or question: a text the predictor reads, so at most MAX_QUERY_TOKENS of its tokens."""
        if query is not None and count_tokens(self.query_tokenizer, query) > api.MAX_QUERY_TOKENS:
            raise HTTPException(422, f"'{name}' is longer than {api.MAX_QUERY_TOKENS} tokens")
        return query

    async def predict(self, media: bytes, query: str | None) -> tuple[str, np.ndarray]:
        """Decode, then Ŝ_Y from the visual deployment: (media kind, embedding)."""
        kind, frames = await self.frames(media)
        return kind, await self.visual.predict.remote((frames, query))

    async def ranked(self, embedding: np.ndarray, texts: list[str], name: str) -> dict:
        """{name: best, "ranking": [{name: text, "score": s}, ...]} for candidate texts, best first."""
        candidates = await self.text.embed_many.remote(texts, cache=True)
        scores = candidates @ embedding
        ranking = [{name: texts[i], "score": float(scores[i])} for i in np.argsort(-scores, kind="stable")]
        return {name: ranking[0][name], "ranking": ranking}

    def require_index(self) -> DeploymentHandle:
        if self.index is None:
            raise HTTPException(501, "this server has no retrieval index: serve with --index URI "
                                     "(`vljepa index-build` writes one)")
        return self.index

    def require_decoder(self) -> DeploymentHandle:
        if self.decoder is None:
            raise HTTPException(501, "this model has no Y-decoder: serve the RUN/model of `vljepa train-decoder`")
        return self.decoder

    def stream_plan(self, asked: api.Stream) -> tuple[WindowSpec, DecodePlan]:
        spec = WindowSpec(window_s=asked.window, stride_s=asked.stride, num_frames=self.num_frames,
                          image_size=self.image_size)
        plan = DecodePlan(strategy=asked.strategy, pooled=asked.pool, segments=asked.segments,
                          seconds_per_decode=asked.seconds_per_decode, threshold=asked.threshold,
                          online_window=asked.online_window)
        return spec, plan

    async def stream_embeddings(self, media: bytes, spec: WindowSpec, query: str | None) -> tuple[np.ndarray, np.ndarray]:
        """A video -> (window centre times (W,), Ŝ_Y (W, E)); 415 / 422 for what is not a usable video.

        Decoding runs off the event loop a chunk of windows at a time, one chunk ahead of the visual
        deployment (which batches a chunk's windows): a long video holds at most a few chunks of
        frames in memory, never all of them. Its window count is checked before any decoding.
        """
        try:
            if sniff(media) != "video":
                raise UnsupportedMedia("a stream must be a video (MP4, WebM, MKV, AVI)")
        except UnsupportedMedia as exc:
            self.media_metrics.rejected_one(NOT_MEDIA)
            raise HTTPException(415, str(exc)) from None
        windows = iter_windows(media, spec, max_windows=self.settings.max_stream_windows)
        times, embeddings, in_flight, decoding_s = [], [], [], 0.0
        try:
            while True:
                started = time.perf_counter()
                chunk = await asyncio.to_thread(next, windows, None)
                decoding_s += time.perf_counter() - started
                if chunk is None:
                    break
                chunk_times, frames = chunk
                times.append(chunk_times)
                in_flight.append(asyncio.gather(*(self.visual.predict.remote((w, query)) for w in frames)))
                if len(in_flight) > 1:  # the previous chunk embeds while the next one decodes
                    embeddings.extend(await in_flight.pop(0))
            for request in in_flight:
                embeddings.extend(await request)
        except SampleError as exc:
            self.media_metrics.rejected_one(exc.reason)
            raise HTTPException(422, f"{exc.reason}: {exc.message}") from None
        finally:
            for request in in_flight:  # a failed request (or a client gone) stops what it still has queued
                request.cancel()
        self.media_metrics.decoded_one("stream", decoding_s)
        return np.concatenate(times), np.stack(embeddings)

    # -- endpoints -------------------------------------------------------------------------------
    # Each documents its body (its model in pipelines/serve/api_requests.py, the one it validates with) and its answers
    # (pipelines/serve/api_responses.py); response_model=None: FastAPI does not re-validate the answers.
    @app.get("/healthz", response_model=None, responses=responses(Status))
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None, responses=responses(Status, 401, 503))
    async def readyz(self, request: Request) -> dict:
        """Ready when every deployment answers within READY_TIMEOUT_S: the decoder's too (a replica
        that could not be placed left /v1/caption hanging while this said ready), and the index's."""
        self.authorize(request)
        deployments = {name: handle for name, handle in {"visual": self.visual, "text": self.text,
                                                         "decoder": self.decoder, "index": self.index}.items()
                       if handle is not None}
        answered = await asyncio.gather(*(answers(handle) for handle in deployments.values()))
        silent = [name for name, ok in zip(deployments, answered) if not ok]
        if silent:
            raise HTTPException(503, f"not ready: the {', '.join(silent)} deployment(s) do not answer within "
                                     f"{READY_TIMEOUT_S:g} s (a replica still starting, or not placed for lack of "
                                     "resources: see `serve status`)")
        return {"status": "ready"}

    @app.post("/v1/embed/text", response_model=None, responses=responses(TextEmbeddings, *TEXT_ERRORS),
              openapi_extra=api.openapi_body(api.EmbedText))
    async def embed_text(self, request: Request) -> dict:
        _, fields = await self.fields(request, api.EmbedText)
        asked = api.read(api.EmbedText, fields)
        return {"embeddings": (await self.text.embed_many.remote(asked.texts)).tolist()}

    @app.post("/v1/embed/media", response_model=None, responses=responses(MediaEmbedding, *MEDIA_ERRORS),
              openapi_extra=api.openapi_body(api.EmbedMedia))
    async def embed_media(self, request: Request) -> dict:
        media, fields = await self.fields(request, api.EmbedMedia)
        asked = api.read(api.EmbedMedia, fields)
        kind, embedding = await self.predict(media, self.query(asked.query))
        return {"kind": kind, "embedding": embedding.tolist()}

    @app.post("/v1/classify", response_model=None, responses=responses(Classification, *MEDIA_ERRORS),
              openapi_extra=api.openapi_body(api.Classify))
    async def classify(self, request: Request) -> dict:
        media, fields = await self.fields(request, api.Classify)
        asked = api.read(api.Classify, fields)
        _, embedding = await self.predict(media, self.query(asked.query))
        return await self.ranked(embedding, asked.labels, "label")

    @app.post("/v1/vqa", response_model=None, responses=responses(Answer, *MEDIA_ERRORS),
              openapi_extra=api.openapi_body(api.Vqa))
    async def vqa(self, request: Request) -> dict:
        media, fields = await self.fields(request, api.Vqa)
        asked = api.read(api.Vqa, fields)
        _, embedding = await self.predict(media, self.query(asked.question, "question"))
        return await self.ranked(embedding, asked.candidates, "answer")

    @app.post("/v1/index/items", response_model=None, responses=responses(IndexItem, *MEDIA_ERRORS, 501),
              openapi_extra=api.openapi_body(api.AddItem))
    async def add_item(self, request: Request) -> dict:
        media, fields = await self.fields(request, api.AddItem)
        index = self.require_index()
        asked = api.read(api.AddItem, fields)
        kind, embedding = await self.predict(media, None)
        return await index.add.remote(asked.id, embedding, kind)

    @app.get("/v1/index/items", response_model=None, responses=responses(IndexItems, 401, 422, 501),
             openapi_extra=api.openapi_query(api.ListItems))
    async def list_items(self, request: Request) -> dict:
        self.authorize(request)
        index = self.require_index()
        asked = api.read(api.ListItems, dict(request.query_params))
        offset, limit = asked.offset, asked.limit
        items, total = await index.page.remote(offset, limit, asked.prefix)
        return {"items": items, "total": total, "next_offset": offset + limit if offset + limit < total else None}

    # :path: ids of items indexed from a feature cache are `cache/shard/key`, with slashes
    @app.delete("/v1/index/items/{item_id:path}", response_model=None, responses=responses(Deleted, 401, 404, 501))
    async def delete_item(self, item_id: str, request: Request) -> dict:
        self.authorize(request)
        if not await self.require_index().delete.remote(item_id):
            raise HTTPException(404, f"no item {item_id!r} in the index")
        return {"deleted": item_id}

    @app.post("/v1/retrieve", response_model=None, responses=responses(SearchResults, *TEXT_ERRORS, 501),
              openapi_extra=api.openapi_body(api.Retrieve))
    async def retrieve(self, request: Request) -> dict:
        _, fields = await self.fields(request, api.Retrieve)
        index = self.require_index()
        asked = api.read(api.Retrieve, fields)
        embedding = (await self.text.embed_many.remote([asked.query]))[0]
        try:
            return {"results": await index.search.remote(embedding, asked.k, asked.prefix, asked.probe)}
        except ProbeOutOfRange as exc:  # raised in the index replica: Ray's error is also of its class
            raise HTTPException(422, str(getattr(exc, "cause", exc))) from None

    @app.post("/v1/caption", response_model=None, responses=responses(Caption, *MEDIA_ERRORS, 501),
              openapi_extra=api.openapi_body(api.Caption))
    async def caption(self, request: Request) -> dict:
        media, fields = await self.fields(request, api.Caption)  # authorises first
        decoder = self.require_decoder()
        asked = api.read(api.Caption, fields)
        kind, embedding = await self.predict(media, self.query(asked.query))
        return {"kind": kind, "text": await decoder.decode.remote((embedding, asked.beams))}

    @app.websocket("/v1/live")
    async def live(self, websocket: WebSocket) -> None:
        """A live feed over a WebSocket: frames in, selective-decoding events out as they are decoded
        (the protocol: pipelines/serve/live.py). Parameters come in the query string."""
        try:
            self.authorize(websocket)
        except HTTPException as exc:  # closed before it is accepted: the handshake is refused (HTTP 403)
            await websocket.close(code=1008, reason=exc.detail)
            return
        await websocket.accept()
        try:
            asked = api.read(api.Live, dict(websocket.query_params))
            spec = WindowSpec(window_s=asked.window, stride_s=asked.stride, num_frames=self.num_frames,
                              image_size=self.image_size)
            settings = LiveSettings(spec=spec, fps=asked.fps, threshold=asked.threshold, online_window=asked.online_window,
                                    pooled=asked.pool, query=self.query(asked.query),
                                    max_frame_bytes=self.settings.max_request_bytes)
            session = LiveSession(websocket, settings, self.visual, self.require_decoder(), self.media_metrics)
        except HTTPException as exc:
            return await refuse(websocket, exc.status_code, exc.detail)
        except SampleError as exc:  # a window too short for the frames the model samples
            return await refuse(websocket, 422, f"{exc.reason}: {exc.message}")
        try:
            await session.run()
        except WebSocketDisconnect:  # the client left while an event was being sent
            pass

    @app.post("/v1/stream", response_model=None, responses=responses(StreamEvents, *MEDIA_ERRORS, 501),
              openapi_extra=api.openapi_body(api.Stream))
    async def stream(self, request: Request) -> dict:
        """A long video -> {"windows", "events": [{"time", "text", "start", "end"}]}: selective decoding."""
        media, fields = await self.fields(request, api.Stream)
        decoder = self.require_decoder()
        asked = api.read(api.Stream, fields)
        spec, plan = self.stream_plan(asked)
        query = self.query(asked.query)
        times, embeddings = await self.stream_embeddings(media, spec, query)
        segments = await asyncio.to_thread(plan_segments, embeddings, times, spec, plan)
        chosen = segment_embeddings(embeddings, segments, plan.pooled)
        texts = await asyncio.gather(*(decoder.decode.remote((e, 1)) for e in chosen))
        return {"windows": len(times), "events": [segment_event(times, s, text) for s, text in zip(segments, texts)]}
