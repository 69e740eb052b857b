"""`vljepa live --video FILE | --frames DIR [--server URL] [--realtime] [--json]`: feed a running
server's live endpoint (WebSocket /v1/live, `vljepa serve`) frame by frame, as a camera would,
and print each event the moment the server decodes it.

--video sends a recording's frames (lossless PNG) at its frame rate; --frames sends a folder of
images (JPEG, PNG, WebP; in name order, as a camera that writes one file per frame leaves them)
at --fps. --realtime paces the frames at that rate, so the events arrive as they would live;
without it the frames go as fast as the server takes them. The token: --token-file, else
$VLJEPA_SERVE_TOKEN, as `vljepa serve` reads it. The online rule's settings (--threshold,
--online-window, --window, --stride, --no-pool, --query) are the endpoint's (docs/decoding.md).
With --json the last line is {"windows", "frames", "refused", "events": [...], "errors": [...]}.
Exit status: 0 when the server answered the whole feed, 1 when it refused it or went away.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ops.data.samples import SampleError
from pipelines.cli.report import print_json_result, run_as_process
from pipelines.cli.types import int_at_least, non_negative_float, positive_float
from pipelines.decode.live_client import live_url, send_live, video_frames
from pipelines.serve.args import TOKEN_ENV

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no JPEG, PNG or WebP images")
    return files


def read_token(token_file: Path | None) -> str | None:
    if token_file is not None:
        token = token_file.read_text().strip()
        if not token:
            raise ValueError(f"{token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def print_event(event: dict) -> None:
    print(f"{event['time']:8.2f} s  ({event['start']:.2f}-{event['end']:.2f})  {event['text']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vljepa live", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, help="a recording whose frames to send at its frame rate")
    source.add_argument("--frames", type=Path, help="a folder of images, one per frame, sent in name order")
    parser.add_argument("--fps", type=positive_float, default=None, help="frames per second (--frames: required; "
                        "--video: its own rate)")
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="the server `vljepa serve` runs")
    parser.add_argument("--token-file", type=Path, default=None, help=f"bearer token (default: ${TOKEN_ENV})")
    parser.add_argument("--realtime", action="store_true", help="send the frames at --fps, as a camera would")
    # the online rule, as the endpoint takes it (its defaults when not given)
    parser.add_argument("--window", type=positive_float, default=None, help="seconds per window")
    parser.add_argument("--stride", type=positive_float, default=None, help="seconds between windows")
    parser.add_argument("--threshold", type=non_negative_float, default=None, help="local variance that marks a change")
    parser.add_argument("--online-window", type=int_at_least(2), default=None, help="windows whose variance is watched")
    parser.add_argument("--no-pool", action="store_true", help="decode the last window's embedding, not the average")
    parser.add_argument("--query", default=None, help="query for every window (default: the captioning prompt)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.frames is not None and args.fps is None:
        parser.error("--frames needs --fps: a folder of images says nothing of their rate")

    try:
        token = read_token(args.token_file)
        if args.video is not None:
            frames, fps = video_frames(args.video.read_bytes())
            fps = args.fps or fps
        else:
            frames, fps = (path.read_bytes() for path in image_files(args.frames)), args.fps
    except (ValueError, OSError, SampleError) as exc:
        print(f"live: {exc}", file=sys.stderr)
        return 2
    url = live_url(args.server, fps=fps, window=args.window, stride=args.stride, threshold=args.threshold,
                   online_window=args.online_window, pool=False if args.no_pool else None, query=args.query)
    pace = "paced in real time" if args.realtime else "as fast as the server takes them"
    print(f"live: frames at {fps:g} fps to {url} ({pace}); events as they are decoded:", flush=True)
    try:
        result = send_live(url, frames, token=token, pace_fps=fps if args.realtime else None,
                           on_event=print_event)
    except Exception as exc:  # noqa: BLE001 - a refused handshake, a server not there: said in one line
        print(f"live: {_why(exc)}", file=sys.stderr)
        return 1
    for error in result.errors:
        where = f"frame {error['frame']}: " if "frame" in error else ""
        print(f"live: {where}{error['status']} {error['error']}", file=sys.stderr)
    if result.summary is None:
        print(f"live: the server closed the stream ({result.close_code}: {result.close_reason or 'no reason'})",
              file=sys.stderr)
        return 1
    summary = result.summary
    print(f"live: {summary['frames']} frames, {summary['refused']} refused, {summary['windows']} windows, "
          f"{summary['events']} events")
    if args.json:
        print_json_result({**summary, "events": result.events, "errors": result.errors})
    return 0


def _why(exc: Exception) -> str:
    from websockets.exceptions import InvalidStatus

    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        hint = " (a token is needed or wrong: --token-file or $VLJEPA_SERVE_TOKEN)" if status == 403 else ""
        return f"the server refused the connection: HTTP {status}{hint}"
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "live"))
