"""Discriminative VQA scoring: every distinct candidate answer encoded once, in batches
(`ops.evaluate.zero_shot.vqa_accuracy`), vs one y-encoder pass per row over that row's candidates (what
evaluation did before, kept here as the baseline).

The rows are what the in-training evaluation scores (`--eval-max-samples`, 2000 by default):
--rows questions, each with 4 candidate answers and a predicted embedding (Ŝ_Y). Two answer sets:
  shared    answers drawn from a pool of --pool short answers (colours, directions, yes / no: the
            sample data's VQA and most benchmarks' answer vocabularies);
  distinct  every row its own 4 answers (multiple choice written per question, as in PLM's data).
Both ways, alternating for --rounds rounds (medians), on the same rows; they must pick the same
answers (checked). Also the time of predicting the rows' Ŝ_Y from S_V (`ops.evaluate.zero_shot.predict`),
for the share scoring takes of an evaluation.

    python -m benchmarks.vqa_scoring [--preset minilm] [--rows 2000] [--pool 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from model.build import build_vljepa
from model.presets import get_preset
from ops.evaluate.zero_shot import predict, vqa_accuracy

WORDS = ["red", "blue", "green", "yellow", "left", "right", "up", "down", "ball", "cube", "cone", "slowly",
         "quickly", "twice", "the table", "a hand", "the floor", "yes", "no", "nothing"]


def per_row_before(model, vqa: list[dict]) -> dict:
    """The previous scoring: one forward pass of the y-encoder per row."""
    correct = []
    for row in vqa:
        options = model.embed_texts(row["candidates"]).cpu()
        best = row["candidates"][int((options @ row["predicted"]).argmax())]
        correct.append(best.strip().lower() == row["target"].strip().lower())
    return {"accuracy": float(np.mean(correct)), "chance": float(np.mean([1.0 / len(r["candidates"]) for r in vqa]))}


def answer_rows(count: int, pool_size: int | None, embed_dim: int, rng: np.random.Generator) -> list[dict]:
    def phrase(i: int) -> str:  # a short answer of 1-3 words, distinct per i
        return " ".join(WORDS[(i // len(WORDS) ** k) % len(WORDS)] for k in range(1 + i % 3)) + f" {i}"

    rows = []
    for r in range(count):
        ids = rng.choice(pool_size, size=4, replace=False) if pool_size else range(4 * r, 4 * r + 4)
        candidates = [phrase(int(i)) for i in ids]
        predicted = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal(embed_dim, dtype=np.float32)), dim=0)
        rows.append({"candidates": candidates, "target": candidates[int(rng.integers(4))], "predicted": predicted})
    return rows


def timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=40, help="distinct answers of the shared answer set")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = build_vljepa(get_preset(args.preset)).eval()
    rng = np.random.default_rng(0)
    results = {"preset": args.preset, "rows": args.rows, "threads": torch.get_num_threads()}

    # predicting the rows' Ŝ_Y, for scale: S_V of a clip of the preset (tokens x x-encoder width)
    cfg = model.config
    size = cfg.x_encoder.image_size
    with torch.no_grad():
        s_v = model.encode_visual(torch.randn(1, cfg.x_encoder.num_frames, 3, size, size))[0].half().numpy()
    cached = [{"s_v_shape": list(s_v.shape), "s_v": s_v.reshape(-1)} for _ in range(min(args.rows, 256))]
    seconds, _ = timed(predict, model, cached, ["What colour is it?"] * len(cached))
    results["predict_ms_per_row"] = round(1000 * seconds / len(cached), 3)

    for name, pool in (("shared", args.pool), ("distinct", None)):
        rows = answer_rows(args.rows, pool, cfg.embed_dim, rng)
        before, now = [], []
        for _ in range(args.rounds):
            seconds, expected = timed(per_row_before, model, rows)
            before.append(seconds)
            seconds, got = timed(vqa_accuracy, model, rows)
            now.append(seconds)
            if got != expected:
                raise AssertionError(f"{name}: the two ways disagree: {got} vs {expected}")
        distinct = len({a for r in rows for a in r["candidates"]})
        results[name] = {"distinct_answers": distinct, "before_s": round(statistics.median(before), 3),
                         "now_s": round(statistics.median(now), 3),
                         "speedup": round(statistics.median(before) / statistics.median(now), 1),
                         "before_ms_per_row": round(1000 * statistics.median(before) / args.rows, 3),
                         "now_ms_per_row": round(1000 * statistics.median(now) / args.rows, 3)}
        print(f"{name:>8}: {args.rows} rows, {distinct} distinct answers: per row {results[name]['before_s']} s, "
              f"distinct answers batched {results[name]['now_s']} s (x{results[name]['speedup']})", flush=True)
    print(f"predicting Ŝ_Y: {results['predict_ms_per_row']} ms per row")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
