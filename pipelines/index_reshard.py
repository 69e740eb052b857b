"""`vljepa index-reshard --store DIR --shards N [--json]`: re-split a kept retrieval index store
(`vljepa serve --index-store DIR`) so that `--index-shards N` can serve it.

An id's shard depends on the shard count, so a store written with one count is refused with
another; this rewrites it for N (ops/index_reshard.py), items, deletions and model record kept.
Stop the server first (a running index would go on appending to the old logs): a store a server
holds is refused, naming the process that holds it (ops/store_lock.py).
"""

from __future__ import annotations

import argparse

from ops.index_reshard import reshard_store
from pipelines.cli_types import positive_int
from pipelines.report import print_json_result, run_as_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vljepa index-reshard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="the index store directory (--index-store)")
    parser.add_argument("--shards", type=positive_int, required=True, help="the shard count to serve it with")
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = parser.parse_args(argv)

    result = reshard_store(args.store, args.shards)
    if result["from"] == result["to"]:
        print(f"index store {args.store} is split over {args.shards} shard(s) already: nothing to do "
              f"({sum(result['items'])} items)")
    else:
        print(f"index store {args.store}: {result['from']} -> {result['to']} shard(s), {sum(result['items'])} items "
              f"({', '.join(str(n) for n in result['items'])} per shard), {result['tombstones']} deleted cache "
              f"item(s) kept deleted; serve it with --index-shards {args.shards} (index_shards: {args.shards})")
    if result["skipped"]:
        print(f"  {result['skipped']} unreadable line(s) of the old logs dropped (writes cut short)")
    if args.json:
        print_json_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "index-reshard"))
