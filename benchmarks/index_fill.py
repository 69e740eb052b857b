"""Filling the retrieval index from a feature cache: the visual replica predicting cached S_V a row
per call (what the ingress did first: one handle call and one forward pass at batch 1 per video)
vs ROWS_PER_CALL rows per call, batched in the replica (`VisualPredictor.predict_cached`).

A Serve application of an untrained preset's model on this machine (the visual replica on the GPU
when there is one); --rows random S_V of the preset's clip size (tokens x x-encoder width, float16
as a cache stores them) sent to the visual deployment's handle both ways, as the ingress sends
them, alternating for --rounds rounds (medians). Both must give the same embeddings (checked).

    python -m benchmarks.index_fill [--preset minilm] [--rows 256] [--rounds 3]
    python -m benchmarks.index_fill --preset paper-random --rows 256      # a GPU node
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import torch

from pipelines import export
from pipelines.cached_predictions import ROWS_PER_CALL


def per_row(handle, features: list[np.ndarray]) -> list[np.ndarray]:
    responses = [handle.predict_cached.remote([f]) for f in features]
    return [response.result()[0] for response in responses]


def batched(handle, features: list[np.ndarray]) -> list[np.ndarray]:
    responses = [handle.predict_cached.remote(features[start : start + ROWS_PER_CALL])
                 for start in range(0, len(features), ROWS_PER_CALL)]
    return [embedding for response in responses for embedding in response.result()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from pipelines.ray_runtime import init_ray, prefer_serve_throughput_mode

    prefer_serve_throughput_mode()  # as `vljepa serve` runs
    from ray import serve

    from model.export import read_manifest
    from pipelines.serve import build_app
    from pipelines.serve_args import ServeAppArgs

    init_ray()
    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as root:
        model_dir = f"{root}/model"
        export.main(["--preset", args.preset, "--out", model_dir])
        config = read_manifest(model_dir)["config"]["x_encoder"]
        from model.export import load_model

        x_encoder = load_model(model_dir).x_encoder
        shape = (x_encoder.num_tokens(config["num_frames"], config["image_size"]), x_encoder.hidden_size)
        del x_encoder
        rng = np.random.default_rng(0)
        features = [rng.standard_normal(shape, dtype=np.float32).astype(np.float16) for _ in range(args.rows)]

        from pipelines.net import free_loopback_port

        serve.start(http_options={"host": "127.0.0.1", "port": free_loopback_port()})
        serve.run(build_app(ServeAppArgs(model=model_dir, num_cpus=0, num_gpus=1 if gpu else 0)), name="bench",
                  route_prefix="/bench")
        handle = serve.get_deployment_handle("VisualPredictor", app_name="bench")
        batched(handle, features[:ROWS_PER_CALL])  # warm-up: first calls, first forward passes
        per_row(handle, features[:4])
        seconds: dict[str, list[float]] = {"per_row": [], "batched": []}
        for _ in range(args.rounds):
            outputs = {}
            for name, fill in (("per_row", per_row), ("batched", batched)):
                started = time.perf_counter()
                outputs[name] = fill(handle, features)
                seconds[name].append(time.perf_counter() - started)
            worst = max(float(np.abs(a - b).max()) for a, b in zip(outputs["per_row"], outputs["batched"]))
            if worst > (2e-2 if gpu else 1e-4):  # bf16 on a GPU: batch shapes change the rounding
                raise AssertionError(f"the two ways disagree by {worst}")
        serve.shutdown()

    medians = {name: statistics.median(values) for name, values in seconds.items()}
    result = {"preset": args.preset, "device": torch.cuda.get_device_name() if gpu else "cpu", "rows": args.rows,
              "s_v_shape": list(shape), "rows_per_call": ROWS_PER_CALL,
              **{f"{name}_s": round(value, 3) for name, value in medians.items()},
              **{f"{name}_rows_per_s": round(args.rows / value, 1) for name, value in medians.items()},
              "speedup": round(medians["per_row"] / medians["batched"], 2)}
    print(f"{args.preset} on {result['device']}: {args.rows} cached S_V {tuple(shape)}: a row per call "
          f"{result['per_row_rows_per_s']} rows/s, {ROWS_PER_CALL} per call {result['batched_rows_per_s']} rows/s "
          f"(x{result['speedup']})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
