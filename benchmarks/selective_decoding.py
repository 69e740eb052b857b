"""Selective decoding, reproducing paper §4.5 (and the cost split of §4.4) on held-out streams.

Several long streams of held-out events (ops.data.long_stream; one seed each) are embedded once: one
Ŝ_Y per window, one forward pass each. Decoding points are then chosen by uniform sampling (the
baseline) or adaptive Ward segmentation, each decoding either the midpoint embedding or the
segment's average; the average decoding rate sweeps from every step (2 Hz at a 0.5 s stride) down
to 0.01 Hz, as in the paper. Each ground-truth annotation is aligned with its nearest decoded
output in time and scored with CIDEr; as in the paper (218 EgoExo4D videos), the score at each
rate is the average over the streams. Reported:
  - the Pareto curves (PNG) and the table of (decodes/s, CIDEr) per strategy;
  - the decoding reduction: the reference rate (1 Hz) / the lowest adaptive rate whose average
    CIDEr reaches uniform's there (paper: ~2.85x), and the same per stream, for the spread;
  - how sure: the reduction's 95% interval over resamplings of the streams, and adaptive minus
    uniform CIDEr at each rate with its interval (paired per stream: both decode the same streams);
  - the oracle segmentation: one exact decode at each annotated event's centre (what adaptive
    decoding would give were its segments the events), the ceiling of one decode per event;
  - at each point, how far the decode matched to an annotation lies from the event's centre;
  - §4.4: milliseconds per step of "encoder + predictor" vs "text decoding" (batch 1).
Everything is logged to MLflow (SQLite under --out).

    python -m benchmarks.selective_decoding --model RUN/model [--streams 12] [--events 48] [--smooth K] [--split eval|train]
        [--durations uniform|loguniform --min-seconds S --max-seconds S] [--out bench-out/selective]

MODEL must hold a Y-decoder (the RUN/model of `vljepa train-decoder`; `make demo` writes one).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.decoding_curves import average_curves, bootstrap_reduction, paired_differences, reduction_at
from ops.data.long_stream import LongStreamConfig, make_long_stream
from ops.decode.segmentation import Segment, segment_embeddings, uniform_segments, ward_segments
from ops.decode.selective_decoding import embed_frames, embed_stream
from ops.decode.stream_windows import WindowSpec, iter_windows
from ops.evaluate.captioning import cider_scores
from pipelines.decode.caption import load_captioner


def strategies(smooth: int) -> dict:
    return {"uniform": lambda e, n: uniform_segments(len(e), n), "adaptive": lambda e, n: ward_segments(e, n, smooth)}


def sweep_rates(highest_hz: float, lowest_hz: float = 0.01, points: int = 24) -> list[float]:
    """Decoding rates to sweep, geometric, highest first (every step) down to the paper's 0.01 Hz."""
    return [float(r) for r in np.geomspace(highest_hz, lowest_hz, points)]


def decodes_at(rate_hz: float, duration_s: float, steps: int) -> int:
    return int(min(steps, max(1, round(rate_hz * duration_s))))


def oracle_point(annotations: list[dict], times: np.ndarray, embeddings: np.ndarray, decode) -> dict:
    """One exact decode at the step nearest each annotated event's centre: what adaptive decoding
    would give were its segments exactly the events (an event's middle is its most typical
    stretch: measured, decodes away from it score lower). The gap to it is the segmentation's."""
    centres = [Segment(c, c + 1) for c in (int(np.abs(times - a["time"]).argmin()) for a in annotations)]
    texts = decode(segment_embeddings(embeddings, centres, pooled=False))
    events = [(float(times[s.start]), t) for s, t in zip(centres, texts)]
    return {"decodes": len(centres), "rate_hz": len(centres) / annotations[-1]["end"],
            **score_aligned(annotations, events)}


def score_aligned(annotations: list[dict], events: list[tuple[float, str]]) -> dict:
    """Each annotation vs its nearest decoded output in time: corpus CIDEr over those pairs, and
    how far (s) that decode lies from the event's centre on average, what decides the CIDEr once
    every event has a decode of its own (measured: quality falls off away from an event's middle)."""
    times = np.array([t for t, _ in events])
    nearest = [int(np.abs(times - a["time"]).argmin()) for a in annotations]
    return {"cider": cider_scores([events[i][1] for i in nearest], [[a["caption"]] for a in annotations])[0],
            "centre_distance_s": float(np.mean([abs(times[i] - a["time"]) for i, a in zip(nearest, annotations)]))}


class MemoDecoder:
    """Decodes embeddings, remembering texts: uniform midpoints recur across the sweep."""

    def __init__(self, decoder):
        self.decoder, self.memo, self.calls = decoder, {}, 0

    def __call__(self, embeddings: np.ndarray) -> list[str]:
        keys = [e.astype(np.float32).tobytes() for e in embeddings]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        for start in range(0, len(todo), 64):
            batch = todo[start : start + 64]
            texts = self.decoder.generate(torch.from_numpy(np.stack([embeddings[i] for i in batch])).float())
            self.memo.update({keys[i]: t for i, t in zip(batch, texts)})
            self.calls += len(batch)
        return [self.memo[k] for k in keys]


def cost_split(captioner, video: bytes, spec: WindowSpec, query: str, repeats: int = 20) -> dict:
    """§4.4: per-step time of the embedding path vs one text decode, both at batch 1."""
    _, frames = next(iter_windows(video, spec, chunk=1))
    embedding = embed_frames(captioner.model, frames, query)
    embed_frames(captioner.model, frames, query)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        embed_frames(captioner.model, frames, query)
    encode_ms = 1000 * (time.perf_counter() - started) / repeats
    captioner.decoder.generate(torch.from_numpy(embedding))
    started = time.perf_counter()
    for _ in range(repeats):
        captioner.decoder.generate(torch.from_numpy(embedding))
    decode_ms = 1000 * (time.perf_counter() - started) / repeats
    return {"encoder_predictor_ms": encode_ms, "decoder_ms": decode_ms, "decoder_over_encoder": decode_ms / encode_ms}


def plot(curves: dict, path: Path, reference: dict, streams: int, oracle: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    styles = {"uniform/exact": ("tab:red", "--"), "uniform/pooled": ("tab:red", "-"),
              "adaptive/exact": ("tab:blue", "--"), "adaptive/pooled": ("tab:blue", "-")}
    for name, points in curves.items():
        colour, line = styles[name]
        axis.plot([p["rate_hz"] for p in points], [p["cider"] for p in points], line, color=colour, marker="o",
                  markersize=3, label=name)
    axis.plot([oracle["rate_hz"]], [oracle["cider"]], "*", color="black", markersize=9,
              label="oracle: one exact decode per event centre")
    axis.axvline(reference["reference_rate_hz"], color="grey", linewidth=0.8)
    for variant, line in (("pooled", "-"), ("exact", "--")):
        axis.axhline(reference[f"adaptive/{variant}"]["uniform_cider"], color="grey", linewidth=0.8, linestyle=line)
    axis.set_xscale("log")
    axis.set_xlabel("average decoding rate (decodes / s)")
    axis.set_ylabel("CIDEr (annotation vs nearest decode)")
    axis.set_title(f"Selective decoding, mean of {streams} held-out streams (sample data)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def stream_curves(captioner, decode: MemoDecoder, seed: int, args) -> tuple[dict, dict]:
    """One held-out stream: -> ({strategy: [{decodes, rate_hz, cider}] per swept rate}, stream facts)."""
    video, annotations = make_long_stream(LongStreamConfig(
        seed=seed, num_events=args.events, split=args.split, durations=args.durations,
        min_seconds=args.min_seconds, max_seconds=args.max_seconds))
    x_config = captioner.model.config.x_encoder
    spec = WindowSpec(window_s=args.window, stride_s=args.stride, num_frames=x_config.num_frames,
                      image_size=x_config.image_size)
    started = time.perf_counter()
    times, embeddings = embed_stream(captioner.model, video, spec, captioner.caption_prompt)
    embed_seconds = time.perf_counter() - started
    duration = annotations[-1]["end"]
    curves: dict[str, list[dict]] = {}
    for strategy, segment in strategies(args.smooth).items():
        for pooled in (False, True):
            name = f"{strategy}/{'pooled' if pooled else 'exact'}"
            curves[name] = []
            for rate in sweep_rates(1.0 / args.stride):
                segments = segment(embeddings, decodes_at(rate, duration, len(times)))
                texts = decode(segment_embeddings(embeddings, segments, pooled))
                events = [(float(times[s.midpoint]), t) for s, t in zip(segments, texts)]
                curves[name].append({"decodes": len(segments), "rate_hz": len(segments) / duration,
                                     **score_aligned(annotations, events)})
    facts = {"seed": seed, "events": len(annotations), "duration_s": duration, "windows": len(times),
             "oracle": oracle_point(annotations, times, embeddings, decode),
             "embed_seconds": round(embed_seconds, 2), "video": video, "spec": spec}
    return curves, facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory with a Y-decoder")
    parser.add_argument("--streams", type=int, default=12, help="held-out streams, seeds SEED, SEED+1, ...")
    parser.add_argument("--events", type=int, default=48, help="events per stream")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first stream")
    parser.add_argument("--split", choices=["eval", "train"], default="eval",
                        help="eval: held-out combinations (the measurement); train: seen ones (a diagnostic: "
                             "what better predictions give)")
    parser.add_argument("--durations", choices=["uniform", "loguniform"], default="uniform",
                        help="how event lengths are drawn (ops.data.long_stream): uniform in seconds, or uniform in "
                             "log-seconds (many short events, a few long ones)")
    parser.add_argument("--min-seconds", type=float, default=LongStreamConfig.min_seconds, help="shortest event")
    parser.add_argument("--max-seconds", type=float, default=LongStreamConfig.max_seconds, help="longest event")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--stride", type=float, default=0.5)
    parser.add_argument("--smooth", type=int, default=1, help="moving-average width (steps) Ward clusters over")
    parser.add_argument("--reference-rate", type=float, default=1.0, help="uniform rate (Hz) to match")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamplings of the streams for the intervals")
    parser.add_argument("--out", type=Path, default=Path("bench-out/selective"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    captioner = load_captioner(args.model)
    decode = MemoDecoder(captioner.decoder)
    per_stream, streams = [], []
    for seed in range(args.seed, args.seed + args.streams):
        curves, facts = stream_curves(captioner, decode, seed, args)
        per_stream.append(curves)
        streams.append(facts)
        reduction = reduction_at(curves, args.reference_rate)["adaptive/pooled"]["reduction"]
        print(f"stream seed {seed}: {facts['events']} events, {facts['duration_s']:.0f} s, {facts['windows']} windows "
              f"embedded in {facts['embed_seconds']:.1f} s; adaptive/pooled reduction at "
              f"{args.reference_rate:g} Hz: {reduction or 0:.2f}x")
    curves = average_curves(per_stream)
    for name, points in curves.items():
        print(f"{name:16s} " + "  ".join(f"{p['rate_hz']:.2f}Hz:{p['cider']:.2f}" for p in points))
    print("mean distance (s) from an event's centre to its nearest decode:")
    for name, points in curves.items():
        print(f"{name:16s} " + "  ".join(f"{p['rate_hz']:.2f}Hz:{p['centre_distance_s']:.2f}" for p in points))

    reference = reduction_at(curves, args.reference_rate)
    uncertainty = bootstrap_reduction(per_stream, args.reference_rate, draws=args.bootstrap)
    gaps = paired_differences(per_stream, draws=args.bootstrap)
    oracle = {key: float(np.mean([f["oracle"][key] for f in streams])) for key in streams[0]["oracle"]}
    costs = cost_split(captioner, streams[0]["video"], streams[0]["spec"], captioner.caption_prompt)
    per_seed = [{"seed": f["seed"], "duration_s": f["duration_s"], "windows": f["windows"],
                 **{name: reduction_at(c, args.reference_rate)[name]["reduction"]
                    for name in ("adaptive/pooled", "adaptive/exact")}} for f, c in zip(streams, per_stream)]
    result = {"streams": len(streams), "split": args.split, "smooth": args.smooth,
              "durations": f"{args.durations} {args.min_seconds:g}-{args.max_seconds:g} s",
              "events": sum(f["events"] for f in streams),
              "duration_s": sum(f["duration_s"] for f in streams), "windows": sum(f["windows"] for f in streams),
              "texts_decoded": decode.calls, "reference": reference, "reduction_interval": uncertainty,
              "oracle": oracle, "per_stream": per_seed, "adaptive_minus_uniform": gaps,
              "cost_split": costs, "curves": curves}
    png = args.out / "selective_decoding.png"
    plot(curves, png, reference, len(streams), oracle)
    (args.out / "selective_decoding.json").write_text(json.dumps(result, indent=1))
    log_to_mlflow(args.out, result, png)
    print(json.dumps({k: v for k, v in result.items() if k not in ("curves", "adaptive_minus_uniform")}, indent=1))
    print_gaps(gaps)
    for variant in ("pooled", "exact"):
        entry = reference[f"adaptive/{variant}"]
        reached = f"{entry['rate_hz']:.2f} Hz: {entry['reduction']:.2f}x fewer decodes" if entry["rate_hz"] else "never"
        print(f"{variant:6s}: uniform at {args.reference_rate:g} Hz scores CIDEr {entry['uniform_cider']:.2f} "
              f"(mean of {len(streams)} streams); adaptive reaches it at {reached}")
        interval = uncertainty[f"adaptive/{variant}"]
        print(f"        reduction over {args.bootstrap} resamplings of the streams: median {interval['median']:.2f}x, "
              f"95% {interval['low']:.2f}-{interval['high']:.2f}x; {100 * interval['share_reaching_paper']:.0f}% "
              f"reach the paper's 2.85x")
    print(f"oracle (one exact decode per event centre): CIDEr {oracle['cider']:.2f} at {oracle['rate_hz']:.2f} Hz")
    print(f"plot: {png}")
    return 0


def print_gaps(gaps: dict, lowest_hz: float = 0.1) -> None:
    """Adaptive minus uniform CIDEr with its 95% interval, at the rates where the curves meet."""
    print("adaptive - uniform CIDEr (95% interval over stream resamplings):")
    for exact, pooled in zip(gaps["adaptive-uniform/exact"], gaps["adaptive-uniform/pooled"]):
        if exact["rate_hz"] >= lowest_hz:
            print(f"  {exact['rate_hz']:5.2f} Hz  exact {exact['difference']:+.3f} [{exact['low']:+.3f}, {exact['high']:+.3f}]"
                  f"  pooled {pooled['difference']:+.3f} [{pooled['low']:+.3f}, {pooled['high']:+.3f}]")


def log_to_mlflow(out: Path, result: dict, png: Path) -> None:
    import mlflow

    from pipelines.train.tracking import tracking_uri_for, using_tracking_uri

    with using_tracking_uri(tracking_uri_for(str(out))):
        mlflow.set_experiment("vljepa-benchmarks")
        with mlflow.start_run(run_name="selective-decoding"):
            reference = result["reference"]
            mlflow.log_params({k: result[k] for k in ("streams", "events", "split", "smooth", "durations")})
            mlflow.log_metrics({**{f"uniform_cider_at_reference.{v}": reference[f"adaptive/{v}"]["uniform_cider"]
                                   for v in ("pooled", "exact")},
                                **{f"adaptive_reduction_at_reference.{v}": reference[f"adaptive/{v}"]["reduction"] or 0.0
                                   for v in ("pooled", "exact")},
                                **{f"adaptive_reduction_p{q}.{v}": result["reduction_interval"][f"adaptive/{v}"][k]
                                   for v in ("pooled", "exact") for q, k in ((2.5, "low"), (97.5, "high"))},
                                "oracle_cider": result["oracle"]["cider"], "oracle_rate_hz": result["oracle"]["rate_hz"],
                                **{f"cost.{k}": v for k, v in result["cost_split"].items()}})
            for name, points in result["curves"].items():
                for p in points:
                    step = int(round(1000 * p["rate_hz"]))
                    mlflow.log_metric(f"cider.{name.replace('/', '.')}", p["cider"], step=step)
                    mlflow.log_metric(f"centre_distance_s.{name.replace('/', '.')}", p["centre_distance_s"], step=step)
            mlflow.log_artifact(str(png))


if __name__ == "__main__":
    raise SystemExit(main())
