"""`make demo`: the main job, end to end on the embedded sample data (5-8.5 minutes on 2 CPUs; it ends with the seconds of each step).

  1. `vljepa summary` for the paper preset (meta device, no weights);
  2. `vljepa sample-data`: real H.264 clips, JPEG/PNG images and VQA samples as webdataset shards;
  3. `vljepa cache-features` on Ray Data: the train split as a cache per source (images; clips and
     VQA), as a cluster caches Datacomp and Action100M, and the eval split (then a dry-run re-run);
  4. `vljepa export --preset` + `vljepa evaluate`: the untrained model, which sits at chance, and its
     y-encoder (pretrained MiniLM) on the sample data's hard-negative text triplets (paper §4.6);
  5. `vljepa train --stage sft` on Ray Train over both train caches, tracked in MLflow (SQLite under the run);
  6. `vljepa evaluate` of the trained model on held-out combinations, against chance; its y-encoder
     on the same triplets;
  7. `vljepa train-decoder`: the Y-decoder, text-only, then fine-tuned on predicted embeddings;
     CIDEr of held-out captions decoded from Ŝ_Y, against the true S_Y (ceiling) and random (floor);
     steps 8 and 9 use whichever of the two decodes held-out Ŝ_Y better;
  8. `vljepa stream`: selective decoding of a long held-out stream, events against the annotations;
  9. `vljepa index-build`: the eval and training-clip caches' captioned videos predicted on Ray
     Data into a LanceDB table, the retrieval index; a re-run predicts nothing;
 10. Ray Serve on 127.0.0.1 with that index: a classify, a VQA, a caption and a retrieve request
     over HTTP, 30 s of the held-out stream fed frame by frame to the live WebSocket endpoint
     (events as they are decoded), the /docs page's assets (served offline), then stop.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import time
from pathlib import Path

from pipelines.cache import cache_features
from pipelines.cli.report import json_printed_now, run_as_process, table
from pipelines.cluster.ray_runtime import prefer_serve_throughput_mode
from pipelines.data import sample_data
from pipelines.decode import stream, train_decoder
from pipelines.evaluate import evaluate
from pipelines.models import export, summary
from pipelines.retrieval import index_build
from pipelines.train import train

# The demo's training schedule: one SFT run (captions with the captioning prompt, VQA with its
# question, images and clips) on a single CPU worker. The lr is far above the paper's 5e-5, which
# is tuned for 24k-sample batches; the y-encoder still gets x0.05 of it.
DEMO_TRAIN_ARGS = ["--stage", "sft", "--steps", "300", "--lr", "1e-3", "--batch-size", "32",
                   "--warmup-steps", "20", "--checkpoint-every", "100", "--eval-every", "100"]
# The Y-decoder: text-only on noisy S_Y of the training captions, then a short fine-tune on the
# trained predictor's Ŝ_Y of the training clips (the two-step recipe of the issue), half of each
# batch kept on S_Y so the fine-tune does not forget the captions' own embeddings.
DEMO_DECODER_TEXT_ARGS = ["--mode", "text", "--steps", "200", "--lr", "1e-3", "--checkpoint-every", "100"]
DEMO_DECODER_TUNE_ARGS = ["--mode", "predicted", "--text-mix", "0.5", "--steps", "150", "--lr", "5e-4",
                          "--checkpoint-every", "150"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vljepa demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where outputs go")
    parser.add_argument("--preset", default="minilm", choices=["minilm", "tiny"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the schedule's steps")
    return parser.parse_args(argv)


class StepClock:
    """Wall-clock seconds of each demo step (banner to banner), printed at the end: where the demo's
    minutes go."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []

    def banner(self, text: str) -> None:
        self.starts.append((text, time.monotonic()))
        print(f"\n=== {text} ===", flush=True)

    def report(self) -> str:
        ends = [start for _, start in self.starts[1:]] + [time.monotonic()]
        seconds = [(name.split(":")[0].split(" (")[0].strip(), end - start)
                   for (name, start), end in zip(self.starts, ends)]
        rows = [[name, f"{s:.0f}"] for name, s in seconds] + [["total", f"{sum(s for _, s in seconds):.0f}"]]
        return table(rows, ["step", "seconds"])


def last_json(verb_main, args: list[str]) -> dict:
    """Run a verb with --json, echo its output, return its JSON result."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), json_printed_now():
        assert verb_main([*args, "--json"]) == 0
    lines = captured.getvalue().rstrip().splitlines()
    print("\n".join(lines[:-1]), flush=True)
    return json.loads(lines[-1])


def comparison(untrained: dict, trained: dict) -> str:
    rows = []
    for task, metric, chance in (("classification", "top1", "chance_top1"), ("classification", "top5", None),
                                 ("retrieval", "r1", "chance_r1"), ("retrieval", "r5", None),
                                 ("vqa", "accuracy", "chance")):
        if task in trained:
            level = trained[task][chance] if chance else None
            rows.append([f"{task} {metric}", f"{untrained[task][metric]:.3f}", f"{trained[task][metric]:.3f}",
                         f"{level:.3f}" if level is not None else "",
                         f"{trained[task][metric] / level:.1f}x" if level else ""])
    if "text_triplets" in trained:  # the y-encoder alone, text only: no chance level (ops/evaluate/text_triplets.py)
        rows.append(["y-encoder hard negatives", f"{untrained['text_triplets']['accuracy']:.3f}",
                     f"{trained['text_triplets']['accuracy']:.3f}", "", ""])
    return table(rows, ["metric", "untrained", "trained", "chance", "trained / chance"])


LIVE_SECONDS = 30  # of the held-out stream fed to /v1/live as a camera would, frame by frame


def serve_requests(model_dir: Path, eval_shards: Path, index: Path, stream_video: Path) -> list[dict]:
    """-> the retrieve request's results."""
    import itertools

    import requests
    from ray import serve

    from ops.data.scenes import all_scenes
    from ops.data.shards import iter_samples, resolve_shards
    from pipelines.cluster.net import free_loopback_port
    from pipelines.decode.live_client import live_url, send_live, video_frames
    from pipelines.serve.app import start
    from pipelines.serve.args import ServeAppArgs

    samples = [s for url in resolve_shards(str(eval_shards)) for s in iter_samples(url)]
    clip = next(s for s in samples if "txt" in s.members and "mp4" in s.members)
    question = next(s for s in samples if "json" in s.members and "query" in json.loads(s.members["json"]))
    port = free_loopback_port()
    start(ServeAppArgs(model=str(model_dir), num_cpus=0, index=str(index)), host="127.0.0.1", port=port)
    base = f"http://127.0.0.1:{port}"
    try:
        labels = [scene.caption for scene in all_scenes()]
        response = requests.post(f"{base}/v1/classify", files={"media": ("clip.mp4", clip.members["mp4"])},
                                 data={"labels": json.dumps(labels)}, timeout=120).json()
        print(f"POST /v1/classify  clip showing {clip.members['txt'].decode()!r}")
        for entry in response["ranking"][:3]:
            print(f"    {entry['score']:.3f}  {entry['label']}")
        meta = json.loads(question.members["json"])
        answer = requests.post(f"{base}/v1/vqa", files={"media": ("clip.mp4", question.members["mp4"])},
                               data={"question": meta["query"], "candidates": json.dumps(meta["candidates"])},
                               timeout=120).json()
        print(f"POST /v1/vqa       {meta['query']!r} -> {answer['answer']!r} (truth: {meta['answer']!r})")
        caption = requests.post(f"{base}/v1/caption", files={"media": ("clip.mp4", clip.members["mp4"])},
                                timeout=120).json()
        print(f"POST /v1/caption   -> {caption['text']!r} (truth: {clip.members['txt'].decode()!r})")
        frames, fps = video_frames(stream_video.read_bytes())
        live = send_live(live_url(base, fps=fps), itertools.islice(frames, round(LIVE_SECONDS * fps)))
        print(f"WS   /v1/live      {live.summary['frames']} frames ({LIVE_SECONDS} s) of the held-out stream sent one by "
              f"one at {fps:g} fps, {live.summary['windows']} windows; events as they were decoded (online rule):")
        for event in live.events:
            print(f"    {event['time']:5.1f} s  {event['text']!r}")
        query = clip.members["txt"].decode()
        found = requests.post(f"{base}/v1/retrieve", json={"query": query, "k": 3}, timeout=120).json()["results"]
        indexed = requests.get(f"{base}/v1/index/items", params={"limit": 1}, timeout=120).json()["total"]
        print(f"POST /v1/retrieve  {query!r} among the {indexed} videos of the LanceDB index {index}:")
        for hit in found:
            print(f"    {hit['score']:.3f}  {hit['id']}  {hit['caption']!r}")
        # the API reference page and everything it loads come from the server: it works offline
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", requests.get(f"{base}/docs", timeout=30).text)
        local = [a for a in assets if a.startswith("/") and requests.get(f"{base}{a}", timeout=30).status_code == 200]
        print(f"GET /docs          API reference (Swagger UI): {len(local)} of {len(assets)} scripts and "
              "stylesheets served by the application itself")
        print_application_metrics(decoded=3)  # the classify, VQA and caption requests' clips
    finally:
        serve.shutdown()
    print(f"served on {base}; stopped")
    return found


def print_application_metrics(decoded: int) -> None:
    """What the application's own metrics (pipelines/serve/metrics.py) say, read off this node's Ray
    metrics agent as Prometheus would scrape it, once the requests' decodes are exported."""
    from pipelines.cluster.exported_metrics import local_metrics_port, scrape, summed, wait_for

    port = local_metrics_port()
    # each replica pushes its metrics to the agent on its own schedule (every 10 s): wait for the
    # ingress's decodes and the text replica's label lookups (the classify and VQA requests' labels)
    wait_for(port, "ray_vljepa_media_decoded_total", lambda count: count >= decoded)
    wait_for(port, "ray_vljepa_label_cache_lookups_total", lambda count: count > 0)
    wait_for(port, "ray_vljepa_index_search_seconds_count", lambda count: count > 0)
    samples = scrape(port)
    print(f"GET :{port}/metrics  Ray's metrics agent, the application's own (vljepa_*): "
          f"{summed(samples, 'ray_vljepa_media_decoded_total'):.0f} uploads decoded, "
          f"{summed(samples, 'ray_vljepa_media_rejected_total'):.0f} refused; label cache "
          f"{summed(samples, 'ray_vljepa_label_cache_lookups_total', outcome='hit'):.0f} hits, "
          f"{summed(samples, 'ray_vljepa_label_cache_lookups_total', outcome='miss'):.0f} misses; index "
          f"{summed(samples, 'ray_vljepa_index_rows'):.0f} rows at version {summed(samples, 'ray_vljepa_index_version'):.0f}, "
          f"{summed(samples, 'ray_vljepa_index_search_seconds_count'):.0f} search(es) in "
          f"{1000 * summed(samples, 'ray_vljepa_index_search_seconds_sum'):.0f} ms")


def served_decoder(text_only: dict, text_only_scores: dict, tuned: dict, tuned_scores: dict) -> tuple[str, dict]:
    """The decoder the demo streams and serves with: the fine-tune only where it decodes held-out
    Ŝ_Y better than the text-only decoder it started from. On the sample data it usually does not:
    it learns the training combinations' predictions and reads unseen ones as seen ones
    (docs/decoding.md). Chosen on the demo's eval split, which also reports both scores."""
    if tuned_scores["cider_predicted"] > text_only_scores["cider_predicted"]:
        name, run, why = "decoder", tuned, "the fine-tune improved"
    else:
        name, run, why = "decoder-text", text_only, "the fine-tune did not improve"
    print(f"streaming and serving with {name}/model: {why} held-out CIDEr from Ŝ_Y "
          f"({text_only_scores['cider_predicted']:.2f} text-only, {tuned_scores['cider_predicted']:.2f} fine-tuned)")
    return name, run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prefer_serve_throughput_mode()  # before the demo's Ray instance starts: step 9 serves in that mode
    clock = StepClock()
    banner = clock.banner
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data, caches, run = out / "data", out / "cache", out / "run"

    banner("1. model summary: the paper's model, built on the meta device (no weights)")
    summary.main(["--preset", "paper"])

    banner("2. sample data: real H.264 clips, JPEG/PNG images, VQA samples as webdataset shards")
    sample_data.main(["--out", str(data), "--seed", str(args.seed)])

    banner("3. feature caching on Ray Data: parse -> decode -> frozen x-encoder actors -> Parquet")
    # a cache per source, as Datacomp (images) and Action100M (clips) would be: training reads both
    train_caches = {"train-images": "image-*.tar", "train-clips": "{video,vqa}-*.tar"}
    for name, shards in train_caches.items():
        cache_features.main(["--shards", str(data / "train" / shards), "--out", str(caches / name),
                             "--preset", args.preset])
    cache_features.main(["--shards", str(data / "eval"), "--out", str(caches / "eval"), "--preset", args.preset])
    train_cache_args = [arg for name in train_caches for arg in ("--cache", str(caches / name))]
    banner("   re-run: complete shards with the same fingerprint are skipped")
    cache_features.main(["--shards", str(data / "eval"), "--out", str(caches / "eval"), "--preset", args.preset,
                         "--dry-run"])

    banner("4. the untrained model on held-out combinations")
    export.main(["--preset", args.preset, "--out", str(out / "untrained-model"), "--seed", str(args.seed)])
    # and the y-encoder's text-only hard negatives (paper §4.6): two wordings of a caption vs a near copy
    triplets = ["--text-triplets", str(data / "text-triplets.jsonl")]
    untrained = last_json(evaluate.main, ["--model", str(out / "untrained-model"), "--cache", str(caches / "eval"),
                                          *triplets])

    banner("5. training on Ray Train (tracked in MLflow)")
    schedule = DEMO_TRAIN_ARGS + (["--steps", str(args.steps)] if args.steps else [])
    if run.exists():
        shutil.rmtree(run)  # the demo's own previous run: start fresh, so every demo trains the same
    result = last_json(train.main, [*schedule, *train_cache_args, "--eval-cache", str(caches / "eval"),
                                    "--eval-text-triplets", str(data / "text-triplets.jsonl"), "--out", str(run),
                                    "--preset", args.preset,
                                    "--seed", str(args.seed)])

    banner("6. the trained model on held-out combinations")
    trained = last_json(evaluate.main, ["--model", result["model"], "--cache", str(caches / "eval"), *triplets])
    print()
    print(comparison(untrained, trained))
    (out / "results.json").write_text(json.dumps({"untrained": untrained, "trained": trained}, indent=2))
    banner("7. the Y-decoder on Ray Train: text-only, then fine-tuned on predicted embeddings")
    for name in ("decoder-text", "decoder"):
        shutil.rmtree(out / name, ignore_errors=True)
    common = ["--model", result["model"], *train_cache_args, "--seed", str(args.seed),
              "--eval-cache", str(caches / "eval")]
    text_only = last_json(train_decoder.main, [*DEMO_DECODER_TEXT_ARGS, *common, "--out", str(out / "decoder-text"),
                                               "--registered-model", ""])
    decoder = last_json(train_decoder.main, [*DEMO_DECODER_TUNE_ARGS, *common, "--out", str(out / "decoder"),
                                             "--init-decoder", text_only["model"]])
    captioning, captioning_text_only = (
        {k.removeprefix("eval."): v for k, v in run["metrics"].items() if k.startswith("eval.cider")}
        for run in (decoder, text_only))
    print()
    print(table([[f"CIDEr, decoded from {source}", f"{captioning_text_only[key]:.2f}", f"{captioning[key]:.2f}"]
                 for source, key in (("predicted Ŝ_Y", "cider_predicted"), ("true S_Y (ceiling)", "cider_true"),
                                     ("random (floor)", "cider_random"))],
                ["held-out captions", "text-only decoder", "fine-tuned on Ŝ_Y"]))
    served_name, served = served_decoder(text_only, captioning_text_only, decoder, captioning)
    (out / "results.json").write_text(json.dumps({"untrained": untrained, "trained": trained, "captioning": captioning,
                                                  "captioning_text_only": captioning_text_only,
                                                  "served_decoder": f"{served_name}/model"}, indent=2))

    banner("8. selective decoding of a long held-out stream (decode only where the meaning changes)")
    annotations = json.loads((data / "streams" / "eval-stream.json").read_text())["annotations"]
    streamed = last_json(stream.main, ["--model", served["model"], "--video", str(data / "streams" / "eval-stream.mp4"),
                                       "--segments", str(len(annotations))])
    print(f"{len(annotations)} annotated events, {streamed['windows']} windows (one forward pass each), "
          f"{len(streamed['events'])} decodes; first annotations: "
          + "; ".join(f"{a['time']:.1f}s {a['caption']!r}" for a in annotations[:3]))

    banner("9. the retrieval index: the caches' videos predicted on Ray Data into a LanceDB table")
    index = out / "index"
    shutil.rmtree(index, ignore_errors=True)  # a previous demo's, of the model it trained: refused for this one
    # the model served in step 10 (its decoder's) predicts the videos: the index must be its own
    build_args = ["--model", served["model"], "--cache", str(caches / "eval"), "--cache", str(caches / "train-clips"),
                  "--index", str(index)]
    built = last_json(index_build.main, build_args)
    banner("   re-run: every video held with its caption already, nothing predicted")
    rebuilt = last_json(index_build.main, build_args)

    banner("10. serving on Ray Serve (127.0.0.1): classify, VQA, caption, a live stream and retrieval")
    found = serve_requests(Path(served["model"]), data / "eval", index, data / "streams" / "eval-stream.mp4")
    results = json.loads((out / "results.json").read_text())
    results["index"] = {"rows": built["rows"], "predicted": built["predicted"], "rebuilt_predicted": rebuilt["predicted"],
                        "served_retrieval": found}
    (out / "results.json").write_text(json.dumps(results, indent=2))

    print(f"\n{clock.report()}")
    print(f"\ndemo finished.\n  data:          {data}\n  feature cache: {caches}\n  index:         {index}"
          f"\n  model:         {result['model']}"
          f"  (registered in MLflow as {result['registered_model']})\n  with decoder:  {served['model']}"
          + (f"  (registered as {served['registered_model']})" if served["registered_model"] else "  (text-only run)") +
          f"\n  curves:        {result['curves']}\n                 {served['curves']}"
          f"\n  MLflow stores: {result['tracking_uri']}\n                 {served['tracking_uri']}"
          f"\n  MLflow UI:     .venv/bin/mlflow ui --backend-store-uri {result['tracking_uri']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "demo"))
