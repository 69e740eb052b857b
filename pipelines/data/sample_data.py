"""`vljepa sample-data --out DIR [--seed S]`: write the embedded sample dataset (train/ and eval/).

Real media: H.264 clips encoded with libx264, JPEG and PNG images, webdataset tar shards; and
streams/eval-stream.mp4 with streams/eval-stream.json: a long video of held-out events back to
back with its (start, end, caption) annotations, for `vljepa stream` and the selective-decoding
benchmark; and text-triplets.jsonl: hard-negative caption triplets for the y-encoder's text-only
test (`vljepa evaluate --text-triplets`, paper §4.6).
"""

from __future__ import annotations

import argparse
import json
import time

import fsspec
from tqdm import tqdm

from ops.data.long_stream import LongStreamConfig, make_long_stream
from ops.data.sample_data import SampleDataConfig, count_samples, sample_triplets, write_split
from ops.evaluate.text_triplets import write_triplets
from pipelines.cli.report import print_json_result, run_as_process
from pipelines.cli.types import non_negative_int, positive_int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vljepa sample-data", description=__doc__)
    parser.add_argument("--out", required=True, help="output directory (local path or s3://)")
    parser.add_argument("--seed", type=int, default=0)
    # size knobs
    parser.add_argument("--clips-per-scene", type=non_negative_int, default=SampleDataConfig.clips_per_scene)
    parser.add_argument("--samples-per-shard", type=positive_int, default=SampleDataConfig.samples_per_shard)
    parser.add_argument("--stream-events", type=non_negative_int, default=LongStreamConfig.num_events,
                        help="events in streams/eval-stream.mp4 (0: no stream)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SampleDataConfig(seed=args.seed, clips_per_scene=args.clips_per_scene,
                              samples_per_shard=args.samples_per_shard)
    out = args.out.rstrip("/")
    started = time.perf_counter()
    result = {}
    for split in ("train", "eval"):
        total = count_samples(split, config)
        with tqdm(total=total, desc=f"sample-data {split}", unit="sample") as bar:
            urls = write_split(out, split, config, progress=bar.update)
        result[split] = {"samples": total, "shards": len(urls)}
        print(f"{split}: {total} samples in {len(urls)} shards under {out}/{split}")
    triplets = sample_triplets(args.seed)
    write_triplets(f"{out}/text-triplets.jsonl", triplets)
    result["text_triplets"] = len(triplets)
    print(f"text triplets: {len(triplets)} (two wordings of a caption and a hard negative) in {out}/text-triplets.jsonl")
    if args.stream_events:
        video, annotations = make_long_stream(LongStreamConfig(seed=args.seed, num_events=args.stream_events))
        fs, streams_dir = fsspec.core.url_to_fs(f"{out}/streams")
        fs.makedirs(streams_dir, exist_ok=True)
        with fsspec.open(f"{out}/streams/eval-stream.mp4", "wb") as handle:
            handle.write(video)
        with fsspec.open(f"{out}/streams/eval-stream.json", "w") as handle:
            json.dump({"video": "eval-stream.mp4", "annotations": annotations}, handle, indent=1)
        result["stream"] = {"events": len(annotations), "seconds": annotations[-1]["end"]}
        print(f"stream: {len(annotations)} annotated events, {annotations[-1]['end']:.0f} s, in {out}/streams/")
    result["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print_json_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "sample-data"))
