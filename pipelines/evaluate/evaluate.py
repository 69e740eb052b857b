"""`vljepa evaluate --model MODEL --cache CACHE [--text-triplets FILE ...] [--json]`: zero-shot
classification, text-to-video retrieval and discriminative VQA on a held-out feature cache, printed
against chance; and with --text-triplets, the y-encoder's text-only hard-negative accuracy (paper
§4.6: SugarCrepe++ / VISLA-style triplets, ops/evaluate/text_triplets.py). Either or both.

MODEL is an exported model directory or an MLflow model URI (models:/vljepa/1, runs:/ID/model).
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from model.export import load_model, read_manifest, recorded_x_encoder
from ops.cache.feature_cache import FeatureCache
from ops.cache.files import require_feature_cache
from ops.evaluate.text_triplets import DEFAULT_FIELDS, read_triplet_files, triplet_accuracy
from ops.evaluate.zero_shot import evaluate_cache
from pipelines.cli.report import print_json_result, run_as_process, table
from pipelines.cli.types import positive_int, triplet_fields
from pipelines.models.source import resolve_model_dir


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
    if "text_triplets" in result:
        t = result["text_triplets"]
        rows.append([f"y-encoder hard negatives ({t['num_triplets']} triplets)", f"{t['accuracy']:.3f}", ""])
        for category, scores in t.get("by_category", {}).items():
            rows.append([f"  {category or '(none)'} ({scores['num_triplets']})", f"{scores['accuracy']:.3f}", ""])
    return table(rows, ["metric", "value", "chance"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vljepa evaluate", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--cache", default=None, help="held-out feature cache")
    parser.add_argument("--max-samples", type=positive_int, default=None, help="read at most this many cached samples")
    parser.add_argument("--prompt", default=None, help="captioning query (default: the model's own)")
    parser.add_argument("--text-triplets", action="append", default=None, metavar="FILE",
                        help="hard-negative text triplets (JSON Lines or JSON, local or s3://): the y-encoder's "
                             "text-only test; repeat for several files, scored as one set with a row per file; "
                             "`vljepa sample-data` writes the sample data's as text-triplets.jsonl")
    parser.add_argument("--triplet-fields", type=triplet_fields, default=DEFAULT_FIELDS, metavar="P1,P2,N",
                        help="the file's fields for the two positives and the negative (default: p1,p2,n)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.cache is None and args.text_triplets is None:
        parser.error("nothing to evaluate: give --cache, --text-triplets, or both")
    model_dir = resolve_model_dir(args.model)
    result: dict = {}
    if args.cache is not None:
        # features of another x-encoder would give numbers that mean nothing (or a shape error): refused
        require_feature_cache(args.cache, recorded_x_encoder(model_dir), reader=f"model {args.model}")
    # read before the model loads: a wrong file or field name fails at once
    triplets = read_triplet_files(args.text_triplets, args.triplet_fields) if args.text_triplets else None
    model = load_model(model_dir)
    if args.cache is not None:
        prompt = args.prompt if args.prompt is not None else read_manifest(model_dir)["metadata"].get("caption_prompt", "")
        rows = sum(counts.get("rows", 0) for counts in (FeatureCache(args.cache).manifest() or {}).get("shards", {}).values())
        with tqdm(total=min(rows, args.max_samples or rows), desc="evaluate", unit="sample") as bar:
            # a row group at a time, predictions kept and features dropped: any size of cache fits
            result = evaluate_cache(model, args.cache, prompt, args.max_samples, progress=bar.update)
        print(f"evaluate: {result['num_samples']} samples from {args.cache}")
    if triplets is not None:
        result["text_triplets"] = triplet_accuracy(model.eval().embed_texts, triplets)
        print(f"evaluate: {len(triplets)} text triplets from {', '.join(args.text_triplets)}")
    print(results_table(result))
    if args.json:
        print_json_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "evaluate"))
