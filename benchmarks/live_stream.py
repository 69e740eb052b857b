"""The live endpoint (WebSocket /v1/live) against uploading the same video (POST /v1/stream,
strategy=online), on loopback: does one session keep up with a camera, and how soon after a change
does its text arrive?

One long held-out stream (ops/data/long_stream.py, 8 fps), served by the model named (it needs a
Y-decoder). Three runs, in this order, each after the same warm-up:
  upload     POST /v1/stream: the whole video at once (the baseline: decoding, windows embedded in
             chunks of 32, decodes in parallel at the end);
  live       the frames as fast as the session takes them (PNG, one message each): its real-time
             factor is video seconds / wall seconds, > 1 keeps up with a camera at that rate;
  paced      the frames at the video's own rate, as a camera sends them: the latency of each event,
             from the frame that completed the window the rule fired on to the event's arrival.
The live runs must give the upload's events (checked).

    python -m benchmarks.live_stream [--model DEMO/decoder-text/model] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import requests

from ops.data.long_stream import LongStreamConfig, make_long_stream
from pipelines.cluster.net import free_loopback_port
from pipelines.decode.live_client import live_url, send_live, video_frames

WINDOW_S = 2.0  # the endpoint's default window: an event's window ends WINDOW_S / 2 after its centre


def served_decoder(demo: Path) -> str:
    """The model `make demo` serves (its results.json names the decoder it kept)."""
    results = demo / "results.json"
    if not results.exists():
        raise SystemExit(f"no {results}: run `make demo` first, or pass --model RUN/model (a model with a Y-decoder)")
    return str(demo / json.loads(results.read_text())["served_decoder"])


def latencies(result, fps: float) -> list[float]:
    """Per event: arrival minus the send time of the last frame of the window the rule fired on."""
    last_frames = [round(event["end"] * fps + WINDOW_S * fps / 2) - 1 for event in result.events]
    return [arrived - result.sent_s[min(frame, len(result.sent_s) - 1)]
            for arrived, frame in zip(result.arrived_s, last_frames)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="exported model with a Y-decoder (default: the demo's)")
    parser.add_argument("--demo", default="demo-output", help="where `make demo` wrote, for the default model")
    parser.add_argument("--seconds", type=float, default=60.0, help="about how long the stream is")
    parser.add_argument("--threshold", type=float, default=0.1, help="the online rule's variance")
    args = parser.parse_args(argv)
    model = args.model or served_decoder(Path(args.demo))

    from ray import serve

    from pipelines.cluster.ray_runtime import init_ray, prefer_serve_throughput_mode
    from pipelines.serve.app import start
    from pipelines.serve.args import ServeAppArgs

    prefer_serve_throughput_mode()  # as `vljepa serve` runs
    init_ray()
    config = LongStreamConfig(num_events=max(2, round(args.seconds / 5.5)), frame_size=64)  # events of 2-9 s
    video, _ = make_long_stream(config)
    frames, fps = video_frames(video)
    frames = list(frames)
    seconds = len(frames) / fps
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    start(ServeAppArgs(model=model, num_cpus=0), port=port)
    try:
        warm = _upload(base, video, args.threshold)  # replicas loaded, first batches compiled
        upload_started = time.perf_counter()
        uploaded = _upload(base, video, args.threshold)
        upload_s = time.perf_counter() - upload_started
        live_started = time.perf_counter()
        live = send_live(live_url(base, fps=fps, threshold=args.threshold), frames)
        live_s = time.perf_counter() - live_started
        paced = send_live(live_url(base, fps=fps, threshold=args.threshold), frames, pace_fps=fps)
    finally:
        serve.shutdown()
    same = live.events == uploaded["events"] == paced.events == warm["events"]
    delays = latencies(paced, fps)

    print(f"stream: {seconds:.1f} s, {len(frames)} frames at {fps:g} fps, {uploaded['windows']} windows, "
          f"{len(uploaded['events'])} events (online rule, threshold {args.threshold:g}); model {model}")
    print(f"{'run':<8} {'wall s':>7} {'x real time':>12}")
    print(f"{'upload':<8} {upload_s:7.2f} {seconds / upload_s:12.2f}")
    print(f"{'live':<8} {live_s:7.2f} {seconds / live_s:12.2f}   (live / upload wall time: {live_s / upload_s:.2f})")
    print(f"paced at {fps:g} fps: event latency from the window's last frame, p50 {statistics.median(delays):.3f} s, "
          f"max {max(delays):.3f} s over {len(delays)} events")
    print(f"the live runs give the upload's events: {'yes' if same else 'NO'}")
    print(json.dumps({"stream_s": round(seconds, 2), "frames": len(frames), "windows": uploaded["windows"],
                      "events": len(uploaded["events"]), "upload_s": round(upload_s, 3), "live_s": round(live_s, 3),
                      "live_over_upload": round(live_s / upload_s, 2), "live_x_real_time": round(seconds / live_s, 2),
                      "paced_latency_p50_s": round(statistics.median(delays), 3),
                      "paced_latency_max_s": round(max(delays), 3), "same_events": same}))
    return 0 if same else 1


def _upload(base: str, video: bytes, threshold: float) -> dict:
    response = requests.post(f"{base}/v1/stream", files={"media": ("stream.mp4", video)},
                             data={"strategy": "online", "threshold": str(threshold)}, timeout=600)
    response.raise_for_status()
    return response.json()


if __name__ == "__main__":
    raise SystemExit(main())
