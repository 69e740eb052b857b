"""Selective decoding, reproducing paper §4.5 (and the cost split of §4.4) on held-out streams.

A long stream of held-out events (ops.long_stream) is embedded once: one Ŝ_Y per window, one
forward pass each. Decoding points are then chosen by uniform sampling (the baseline) or adaptive
Ward segmentation, each decoding either the midpoint embedding or the segment's average; the
number of decodes sweeps from every step down to a handful. Each ground-truth annotation is
aligned with its nearest decoded output in time and scored with CIDEr. Reported:
  - the Pareto curves (PNG) and the table of (decodes/s, CIDEr) per strategy;
  - the decoding reduction: uniform's decodes at a reference rate / the fewest adaptive decodes
    reaching at least uniform's CIDEr there (paper: ~2.85x at 1 Hz);
  - §4.4: milliseconds per step of "encoder + predictor" vs "text decoding" (batch 1).
Everything is logged to MLflow (SQLite under --out).

    python -m benchmarks.selective_decoding --model RUN/model [--events 48] [--out bench-out/selective]

MODEL must hold a Y-decoder (the RUN/model of `vljepa train-decoder`; `make demo` writes one).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ops.cider import cider_scores
from ops.long_stream import LongStreamConfig, make_long_stream
from ops.segmentation import segment_embeddings, uniform_segments, ward_segments
from ops.selective_decoding import embed_frames, embed_stream
from ops.stream_windows import WindowSpec, iter_windows
from pipelines.captioner import load_captioner

STRATEGIES = {"uniform": lambda e, n: uniform_segments(len(e), n), "adaptive": ward_segments}


def sweep_counts(steps: int, smallest: int = 2, points: int = 16) -> list[int]:
    return sorted({int(round(x)) for x in np.geomspace(smallest, steps, points)})


def aligned_cider(annotations: list[dict], events: list[tuple[float, str]]) -> float:
    """Each annotation vs its nearest decoded output in time; corpus CIDEr over those pairs."""
    times = np.array([t for t, _ in events])
    nearest = [events[int(np.abs(times - a["time"]).argmin())][1] for a in annotations]
    return cider_scores(nearest, [[a["caption"]] for a in annotations])[0]


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


def reduction_at(curves: dict, rate: float) -> dict:
    """Uniform's CIDEr at `rate` (interpolated in log-rate) and the adaptive rate that first reaches it."""
    uniform = curves["uniform/pooled"]
    rates = np.array([p["rate_hz"] for p in uniform])
    target = float(np.interp(np.log(rate), np.log(rates), [p["cider"] for p in uniform]))
    result = {"reference_rate_hz": rate, "uniform_cider": target}
    for name in ("adaptive/pooled", "adaptive/exact"):
        reached = [p["rate_hz"] for p in curves[name] if p["cider"] >= target]
        result[name] = {"rate_hz": min(reached) if reached else None,
                        "reduction": rate / min(reached) if reached else None}
    return result


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


def plot(curves: dict, path: Path, reference: dict) -> None:
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
    axis.axvline(reference["reference_rate_hz"], color="grey", linewidth=0.8)
    axis.axhline(reference["uniform_cider"], color="grey", linewidth=0.8)
    axis.set_xscale("log")
    axis.set_xlabel("average decoding rate (decodes / s)")
    axis.set_ylabel("CIDEr (annotation vs nearest decode)")
    axis.set_title("Selective decoding on held-out streams (sample data)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory with a Y-decoder")
    parser.add_argument("--events", type=int, default=48, help="events in the held-out stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--stride", type=float, default=0.5)
    parser.add_argument("--reference-rate", type=float, default=1.0, help="uniform rate (Hz) to match")
    parser.add_argument("--out", type=Path, default=Path("bench-out/selective"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    captioner = load_captioner(args.model)
    video, annotations = make_long_stream(LongStreamConfig(seed=args.seed, num_events=args.events))
    x_config = captioner.model.config.x_encoder
    spec = WindowSpec(window_s=args.window, stride_s=args.stride, num_frames=x_config.num_frames,
                      image_size=x_config.image_size)
    query = captioner.caption_prompt
    started = time.perf_counter()
    times, embeddings = embed_stream(captioner.model, video, spec, query)
    embed_seconds = time.perf_counter() - started
    duration = annotations[-1]["end"]
    print(f"stream: {len(annotations)} events, {duration:.0f} s, {len(times)} windows embedded in {embed_seconds:.1f} s")

    decode = MemoDecoder(captioner.decoder)
    curves: dict[str, list[dict]] = {}
    for strategy, segment in STRATEGIES.items():
        for pooled in (False, True):
            name = f"{strategy}/{'pooled' if pooled else 'exact'}"
            curves[name] = []
            for count in sweep_counts(len(times)):
                segments = segment(embeddings, count)
                texts = decode(segment_embeddings(embeddings, segments, pooled))
                events = [(float(times[s.midpoint]), t) for s, t in zip(segments, texts)]
                curves[name].append({"decodes": len(segments), "rate_hz": len(segments) / duration,
                                     "cider": aligned_cider(annotations, events)})
            print(f"{name:16s} " + "  ".join(f"{p['rate_hz']:.2f}Hz:{p['cider']:.2f}" for p in curves[name]))

    reference = reduction_at(curves, args.reference_rate)
    best = max((reduction_at(curves, p["rate_hz"])["adaptive/pooled"]["reduction"] or 0.0, p["rate_hz"])
               for p in curves["uniform/pooled"] if p["rate_hz"] >= 0.05)
    costs = cost_split(captioner, video, spec, query)
    result = {"events": len(annotations), "duration_s": duration, "windows": len(times),
              "texts_decoded": decode.calls, "reference": reference,
              "best_reduction": {"reduction": best[0], "uniform_rate_hz": best[1]},
              "cost_split": costs, "curves": curves}
    png = args.out / "selective_decoding.png"
    plot(curves, png, reference)
    (args.out / "selective_decoding.json").write_text(json.dumps(result, indent=1))
    log_to_mlflow(args.out, result, png)
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=1))
    print(f"plot: {png}")
    return 0


def log_to_mlflow(out: Path, result: dict, png: Path) -> None:
    import mlflow

    from pipelines.tracking import tracking_uri_for, using_tracking_uri

    with using_tracking_uri(tracking_uri_for(str(out))):
        mlflow.set_experiment("vljepa-benchmarks")
        with mlflow.start_run(run_name="selective-decoding"):
            reference = result["reference"]
            mlflow.log_metrics({"uniform_cider_at_reference": reference["uniform_cider"],
                                "adaptive_reduction_at_reference": reference["adaptive/pooled"]["reduction"] or 0.0,
                                "best_reduction": result["best_reduction"]["reduction"],
                                **{f"cost.{k}": v for k, v in result["cost_split"].items()}})
            for name, points in result["curves"].items():
                for p in points:
                    mlflow.log_metric(f"cider.{name.replace('/', '.')}", p["cider"], step=p["decodes"])
            mlflow.log_artifact(str(png))


if __name__ == "__main__":
    raise SystemExit(main())
