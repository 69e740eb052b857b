"""A client of the live endpoint (WebSocket /v1/live, pipelines/serve/live.py): a feed of frames
in, the events the server decodes out, as a camera would send them.

    from pipelines.decode.live_client import live_url, send_live, video_frames
    frames, fps = video_frames(open("recording.mp4", "rb").read())
    result = send_live(live_url("http://127.0.0.1:8000", fps=fps), frames)
    for event in result.events: print(event["time"], event["text"])

Events are read while frames are still being sent: the server sends each one the moment it is
decoded, and a client that only read at the end would stop reading the socket, and with it the
server, once its receive buffer filled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

from ops.data.frames import encode_image, open_video, read_frames

FRAMES_PER_READ = 64  # decoded at a time by video_frames: a long recording is never held whole


@dataclass
class LiveResult:
    events: list[dict] = field(default_factory=list)  # {"time", "text", "start", "end"}, in order
    errors: list[dict] = field(default_factory=list)  # frames the server refused: {"error", "status", "frame"}
    summary: dict | None = None  # {"windows", "frames", "refused", "events"}; None if the server closed first
    close_code: int | None = None
    close_reason: str = ""
    sent_s: list[float] = field(default_factory=list)  # when each frame was sent, seconds after the first
    arrived_s: list[float] = field(default_factory=list)  # when each event arrived, on the same clock


def video_frames(video: bytes) -> tuple[Iterator[bytes], float]:
    """A recorded video -> (its frames as PNG images, lossless, in order; its frame rate)."""
    reader, count, fps = open_video(video)

    def frames() -> Iterator[bytes]:
        for first in range(0, count, FRAMES_PER_READ):
            for pixels in read_frames(reader, range(first, min(count, first + FRAMES_PER_READ))):
                yield encode_image(pixels, "png")

    return frames(), fps


def live_url(base: str, **params) -> str:
    """ws(s)://host:port/v1/live?... from an http(s) base URL and the endpoint's parameters."""
    scheme, rest = base.rstrip("/").split("://", 1)
    ws = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    values = {k: json.dumps(v) if isinstance(v, bool) else v for k, v in params.items() if v is not None}
    return f"{ws}://{rest}/v1/live" + (f"?{urlencode(values)}" if values else "")


def send_live(url: str, frames: Iterable[bytes], *, token: str | None = None, timeout_s: float = 120.0,
              pace_fps: float | None = None, on_event: Callable[[dict], None] | None = None) -> LiveResult:
    """Send each frame as a binary message, then {"end": true}; collect what the server answers.
    pace_fps: send frame n at n / pace_fps seconds, as a camera would (default: as fast as possible).
    on_event: called with each event as it arrives."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    result = LiveResult()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with connect(url, additional_headers=headers, open_timeout=timeout_s, close_timeout=timeout_s,
                 max_size=None) as socket:
        started = time.monotonic()
        try:
            for n, frame in enumerate(frames):
                due = started + n / pace_fps if pace_fps else 0.0
                # what arrives before the frame is due, read as it arrives (not pacing: what has arrived)
                while (message := _next(socket, max(0.0, due - time.monotonic()))) is not None:
                    _file(result, message, started, on_event)
                result.sent_s.append(time.monotonic() - started)
                socket.send(frame)
            socket.send(json.dumps({"end": True}))
            while result.summary is None:
                message = _next(socket, timeout_s)
                if message is None:
                    raise TimeoutError(f"no answer from {url} within {timeout_s:g} s")
                _file(result, message, started, on_event)
        except ConnectionClosed:  # a refused session or a server gone: the close code says which
            _drain(socket, result, started, on_event)
        socket.close()
        result.close_code, result.close_reason = socket.close_code, socket.close_reason or ""
    return result


def _drain(socket, result: LiveResult, started: float, on_event: Callable[[dict], None] | None) -> None:
    """What the server sent before it closed (its reason for closing, say) and was not read yet."""
    from websockets.exceptions import ConnectionClosed

    try:
        while (message := _next(socket, 0)) is not None:
            _file(result, message, started, on_event)
    except ConnectionClosed:
        pass


def _next(socket, timeout_s: float) -> dict | None:
    try:
        return json.loads(socket.recv(timeout=timeout_s))
    except TimeoutError:
        return None


def _file(result: LiveResult, message: dict, started: float, on_event: Callable[[dict], None] | None) -> None:
    if "error" in message:
        result.errors.append(message)
    elif "windows" in message:
        result.summary = message
    else:
        result.events.append(message)
        result.arrived_s.append(time.monotonic() - started)
        if on_event is not None:
            on_event(message)
