"""`vljepa stream --model MODEL --video FILE [--window S] [--stride S] [--json]`: selective decoding
over a long video (paper §4.5).

A window of --window seconds slides every --stride seconds; each step is one forward pass
(x-encoder + predictor, no autoregression) giving Ŝ_Y. The stream is cut into segments and the
Y-decoder runs once per segment, at its midpoint:
  --strategy adaptive   Ward clustering with temporal connectivity into --segments segments (default)
  --strategy uniform    equal segments (a fixed decoding rate), the baseline
  --strategy online     a live stream: decode when the local variance exceeds --threshold, then settles
--segments defaults to one per --seconds-per-decode seconds; --no-pool decodes the midpoint's own
embedding instead of the segment average. With --json the last line is
{"windows": <steps>, "events": [{"time": <seconds>, "text": ..., "start": ..., "end": ...}, ...]}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ops.data.samples import SampleError
from ops.decode.selective_decoding import STRATEGIES, DecodePlan, stream_events
from ops.decode.stream_windows import WindowSpec
from pipelines.cli.report import print_json_result, run_as_process, table
from pipelines.cli.types import int_at_least, non_negative_float, positive_float, positive_int
from pipelines.decode.caption import load_captioner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vljepa stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory with a Y-decoder, or an MLflow model URI")
    parser.add_argument("--video", required=True, type=Path)
    parser.add_argument("--decoder", default=None, help="Y-decoder directory (default: the one inside MODEL)")
    # the embedding stream
    parser.add_argument("--window", type=positive_float, default=2.0, help="seconds per window")
    parser.add_argument("--stride", type=positive_float, default=0.5, help="seconds between windows")
    parser.add_argument("--query", default=None, help="query for every window (default: the captioning prompt)")
    # where to decode
    parser.add_argument("--strategy", choices=STRATEGIES, default="adaptive")
    parser.add_argument("--segments", type=positive_int, default=None, help="decodes for the whole video (adaptive, uniform)")
    parser.add_argument("--seconds-per-decode", type=positive_float, default=4.0, help="default --segments: duration / this")
    parser.add_argument("--no-pool", action="store_true", help="decode the midpoint embedding, not the segment average")
    parser.add_argument("--threshold", type=non_negative_float, default=0.1, help="online: local variance that marks a change")
    parser.add_argument("--online-window", type=int_at_least(2), default=4, help="online: steps in the local window")
    parser.add_argument("--smooth", type=positive_int, default=1, help="adaptive: cluster a moving average over this many steps")
    parser.add_argument("--beams", type=positive_int, default=1, help="1: greedy decoding; more: beam search")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    plan = DecodePlan(strategy=args.strategy, segments=args.segments, seconds_per_decode=args.seconds_per_decode,
                      pooled=not args.no_pool, threshold=args.threshold, online_window=args.online_window,
                      smooth=args.smooth)
    try:
        plan.validate()
        captioner = load_captioner(args.model, args.decoder)
        config = captioner.model.config.x_encoder
        spec = WindowSpec(window_s=args.window, stride_s=args.stride, num_frames=config.num_frames,
                          image_size=config.image_size)
        spec.validate()
        query = args.query if args.query is not None else captioner.caption_prompt
        result = stream_events(captioner.model, captioner.decoder, args.video.read_bytes(), spec, plan, query, args.beams)
    except (ValueError, OSError) as exc:
        print(f"stream: {exc}", file=sys.stderr)
        return 2
    except SampleError as exc:
        print(f"stream: {args.video}: {exc}", file=sys.stderr)
        return 2
    print(f"stream: {result['windows']} windows, {len(result['events'])} decodes ({args.strategy})")
    print(table([[f"{e['time']:.1f}", f"{e['start']:.1f}-{e['end']:.1f}", e["text"]] for e in result["events"]],
                ["time (s)", "segment (s)", "text"]))
    if args.json:
        print_json_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "stream"))
