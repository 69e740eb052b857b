"""One live stream on the WebSocket endpoint /v1/live: frames in, events out as they happen.

The paper's streaming use (§2 "Selective Decoding"): a camera sends frames as it records; the
server embeds a window every `stride` seconds (one forward pass each, no autoregression), watches
the local variance of the embedding stream (ops/decode/segmentation.OnlineSegmenter) and decodes text
only when the meaning has changed and settled again. Each event is sent the moment it is decoded.

The protocol (the client's messages, then the server's):
  binary     one frame: a JPEG, PNG or WebP image; frame n is at n / fps seconds
  text       {"end": true}: the feed is over
  text       {"time", "start", "end", "text"}: an event, as /v1/stream gives them
  text       {"error", "status", "frame"}: a frame refused (413 too large, 415 not an image, 422
             undecodable or absurd); the stream goes on without it, so later times shift by 1/fps
  text       {"windows", "frames", "refused", "events"}: the summary, after {"end": true}; then
             the server closes (1000)
A bad parameter or a model without a Y-decoder is an {"error", "status"} message and a close
(1008); a client silent for LIVE_IDLE_S seconds is closed (1001).

Fed a recorded video's frames at its rate, a session gives exactly /v1/stream's events for that
video with strategy=online: same windows (ops/decode/live_windows.py), same decode points, same texts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from fastapi import WebSocket
from ray.serve.handle import DeploymentHandle

from ops.data.frames import UnsupportedMedia, decode_image, sniff
from ops.data.samples import SampleError
from ops.decode.live_windows import LiveWindows
from ops.decode.segmentation import OnlineSegmenter, Segment, segment_embeddings, segment_event
from ops.decode.stream_windows import WindowSpec
from pipelines.serve.metrics import FRAME_TOO_LARGE, NOT_MEDIA, MediaMetrics

LIVE_IDLE_S = 60.0  # a session that receives nothing for this long is closed: it holds a replica's slot
CLOSE_REASON_BYTES = 123  # the most a WebSocket close frame's reason may hold


@dataclass(frozen=True, kw_only=True)
class LiveSettings:
    spec: WindowSpec
    fps: float
    threshold: float
    online_window: int
    pooled: bool
    query: str | None
    max_frame_bytes: int


async def refuse(websocket: WebSocket, status: int, message: str) -> None:
    """An accepted session that cannot go on: the reason as a message, then a policy close."""
    await websocket.send_json({"error": message, "status": status})
    await websocket.close(code=1008, reason=message.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore"))


class LiveSession:
    def __init__(self, websocket: WebSocket, settings: LiveSettings, visual: DeploymentHandle,
                 decoder: DeploymentHandle, metrics: MediaMetrics):
        self.websocket, self.settings, self.visual, self.decoder = websocket, settings, visual, decoder
        self.metrics = metrics
        self.windows = LiveWindows(settings.spec, settings.fps)
        self.segmenter = OnlineSegmenter(settings.online_window, settings.threshold)
        # a decode covers at most the last `online_window` steps: only those are kept
        self.recent: deque[tuple[float, np.ndarray]] = deque(maxlen=settings.online_window)
        self.received = self.refused = self.events = 0
        self.decoding_s = 0.0

    async def run(self) -> None:
        """Until {"end": true} (then the summary), the client leaving, or LIVE_IDLE_S of silence."""
        try:
            while True:
                try:
                    message = await asyncio.wait_for(self.websocket.receive(), LIVE_IDLE_S)
                except asyncio.TimeoutError:
                    await self.websocket.close(code=1001, reason=f"no message for {LIVE_IDLE_S:g} s")
                    return
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await self.frame(message["bytes"])
                elif self.is_end(message.get("text")):
                    await self.finish()
                    return
                else:
                    await self.websocket.send_json({"error": 'a text message must be {"end": true}; frames are '
                                                             "binary messages", "status": 400})
        finally:
            if self.received:
                self.metrics.decoded_one("live", self.decoding_s)

    @staticmethod
    def is_end(text: str | None) -> bool:
        try:
            return json.loads(text or "") == {"end": True}
        except (ValueError, RecursionError):
            return False

    async def frame(self, data: bytes) -> None:
        number = self.received + self.refused
        if len(data) > self.settings.max_frame_bytes:
            return await self.refuse_frame(number, 413, f"frame of {len(data)} bytes exceeds the "
                                                        f"{self.settings.max_frame_bytes}-byte limit", FRAME_TOO_LARGE)
        started = time.perf_counter()
        try:
            if sniff(data) != "image":
                raise UnsupportedMedia("a frame must be an image (JPEG, PNG, WebP), not a video")
            pixels = (await asyncio.to_thread(decode_image, data, self.settings.spec.image_size))[0][0]
        except UnsupportedMedia as exc:
            return await self.refuse_frame(number, 415, str(exc), NOT_MEDIA)
        except SampleError as exc:
            return await self.refuse_frame(number, 422, f"{exc.reason}: {exc.message}", exc.reason)
        self.decoding_s += time.perf_counter() - started
        self.received += 1
        for window in self.windows.push(pixels):
            await self.step(*window)

    async def refuse_frame(self, number: int, status: int, message: str, reason: str) -> None:
        self.refused += 1
        self.metrics.rejected_one(reason)
        await self.websocket.send_json({"error": message, "status": status, "frame": number})

    async def step(self, centre: float, frames: np.ndarray) -> None:
        """One window: its Ŝ_Y, and a decode when the segmenter asks for one."""
        embedding = await self.visual.predict.remote((frames, self.settings.query))
        self.recent.append((centre, embedding))
        segment = self.segmenter.push(embedding)
        if segment is not None:
            await self.decode(segment)

    async def decode(self, segment: Segment) -> None:
        first = self.segmenter.steps - len(self.recent)  # the step of self.recent[0]
        times = [t for t, _ in self.recent]
        local = Segment(segment.start - first, segment.end - first)
        chosen = segment_embeddings(np.stack([e for _, e in self.recent]), [local], self.settings.pooled)[0]
        text = await self.decoder.decode.remote((chosen, 1))
        self.events += 1
        await self.websocket.send_json(segment_event(times, local, text))

    async def finish(self) -> None:
        for window in self.windows.finish():
            await self.step(*window)
        segment = self.segmenter.finish()
        if segment is not None:
            await self.decode(segment)
        await self.websocket.send_json({"windows": self.windows.windows, "frames": self.received,
                                        "refused": self.refused, "events": self.events})
        await self.websocket.close(code=1000)
