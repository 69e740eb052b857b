"""`vljepa summary --preset P [--json]`: parameter counts per component, built on the meta device.

No weights are read, so `--preset paper` works offline and in seconds.
"""

from __future__ import annotations

import argparse

from model.build import build_skeleton
from model.parameters import component_counts
from model.presets import PRESETS, get_preset
from pipelines.cli.report import human_count, print_json_result, run_as_process, table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vljepa summary", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = get_preset(args.preset)
    counts = component_counts(build_skeleton(config))
    rows = [[name, human_count(c["total"]), human_count(c["trainable"]), human_count(c["frozen"])]
            for name, c in counts.items()]
    print(f"VL-JEPA preset {config.name!r}: shared space {config.embed_dim}-d")
    print(f"  x-encoder {config.x_encoder.checkpoint}")
    print(f"  predictor {config.predictor.checkpoint} layers "
          f"{config.predictor.layer_start}..{config.predictor.layer_start + config.predictor.num_layers - 1}")
    print(f"  y-encoder {config.y_encoder.checkpoint}")
    print(table(rows, ["component", "total", "trainable", "frozen"]))
    if args.json:
        print_json_result(counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "summary"))
