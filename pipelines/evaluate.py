"""`vljepa evaluate --model MODEL --cache CACHE [--json]`: zero-shot classification, text-to-video
retrieval and discriminative VQA on a held-out feature cache, printed against chance.

MODEL is an exported model directory or an MLflow model URI (models:/vljepa/1, runs:/ID/model).
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from model.export import load_model, read_manifest, recorded_x_encoder
from ops.cache_files import require_feature_cache
from ops.evaluation import evaluate_cache
from ops.feature_cache import FeatureCache
from pipelines.cli_types import positive_int
from pipelines.model_source import resolve_model_dir
from pipelines.report import print_json_result, run_as_process, table


def results_table(result: dict) -> str:
    rows = []
    if "classification" in result:
        c = result["classification"]
        rows += [["classification top-1", f"{c['top1']:.3f}", f"{c['chance_top1']:.3f}"],
                 ["classification top-5", f"{c['top5']:.3f}", f"{min(1.0, 5 * c['chance_top1']):.3f}"]]
    if "retrieval" in result:
        r = result["retrieval"]
        rows += [["retrieval R@1", f"{r['r1']:.3f}", f"{r['chance_r1']:.3f}"],
                 ["retrieval R@5", f"{r['r5']:.3f}", ""], ["retrieval R@10", f"{r['r10']:.3f}", ""]]
    if "vqa" in result:
        rows.append(["VQA accuracy", f"{result['vqa']['accuracy']:.3f}", f"{result['vqa']['chance']:.3f}"])
    return table(rows, ["metric", "value", "chance"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vljepa evaluate", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--cache", required=True, help="held-out feature cache")
    parser.add_argument("--max-samples", type=positive_int, default=None, help="read at most this many cached samples")
    parser.add_argument("--prompt", default=None, help="captioning query (default: the model's own)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    model_dir = resolve_model_dir(args.model)
    # features of another x-encoder would give numbers that mean nothing (or a shape error): refused
    require_feature_cache(args.cache, recorded_x_encoder(model_dir), reader=f"model {args.model}")
    prompt = args.prompt if args.prompt is not None else read_manifest(model_dir)["metadata"].get("caption_prompt", "")
    model = load_model(model_dir)
    rows = sum(counts.get("rows", 0) for counts in (FeatureCache(args.cache).manifest() or {}).get("shards", {}).values())
    with tqdm(total=min(rows, args.max_samples or rows), desc="evaluate", unit="sample") as bar:
        # a row group at a time, predictions kept and features dropped: any size of cache fits
        result = evaluate_cache(model, args.cache, prompt, args.max_samples, progress=bar.update)
    print(f"evaluate: {result['num_samples']} samples from {args.cache}")
    print(results_table(result))
    if args.json:
        print_json_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "evaluate"))
