"""`vljepa sample-data --out DIR [--seed S]`: write the embedded sample dataset (train/ and eval/).

Real media: H.264 clips encoded with libx264, JPEG and PNG images, webdataset tar shards.
"""

from __future__ import annotations

import argparse
import time

from tqdm import tqdm

from ops.sample_data import SampleDataConfig, count_samples, write_split
from pipelines.report import print_json_result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vljepa sample-data", description=__doc__)
    parser.add_argument("--out", required=True, help="output directory (local path or s3://)")
    parser.add_argument("--seed", type=int, default=0)
    # size knobs
    parser.add_argument("--clips-per-scene", type=int, default=SampleDataConfig.clips_per_scene)
    parser.add_argument("--samples-per-shard", type=int, default=SampleDataConfig.samples_per_shard)
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
    result["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print_json_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
