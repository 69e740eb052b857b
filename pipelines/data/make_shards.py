"""`vljepa make-shards --input FOLDER|MANIFEST.csv|MANIFEST.jsonl --out DIR`: your media as shards.

See ops/data/make_shards.py (and docs/data.md) for the accepted inputs; the output feeds
`vljepa cache-features --shards DIR`.
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from ops.data.make_shards import read_entries, write_shards
from pipelines.cli.report import print_json_result, run_as_process
from pipelines.cli.types import positive_int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vljepa make-shards", description=__doc__)
    parser.add_argument("--input", required=True, help="a folder of media, a .csv or a .jsonl manifest")
    parser.add_argument("--out", required=True, help="output directory for {shard:05d}.tar")
    parser.add_argument("--samples-per-shard", type=positive_int, default=1000)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tqdm(desc="make-shards", unit="sample") as bar:
        counts = write_shards(read_entries(args.input), args.out, args.samples_per_shard, progress=bar.update)
    print(f"make-shards: {counts['written']} samples in {counts['shards']} shards under {args.out}; "
          f"{counts['failed']} failed (see {args.out}/<shard>.parquet)")
    if args.json:
        print_json_result(counts)
    return 0 if counts["written"] else 1


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "make-shards"))
