"""argparse types for counts and sizes that must be positive: `--actors 0` is refused with a usage
message instead of starting a pipeline that can never run (an actor pool of size 0 waits forever)
or silently meaning "the default" (`--frames 0`). Floats must also be finite: `--stride inf` or
`--lr nan` is a typo, not a setting."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _bounded(name: str, convert: Callable[[str], float], low: float, strict: bool) -> Callable[[str], float]:
    def parse(text: str):
        value = convert(text)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
        if not (value > low if strict else value >= low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {value}")
        return value

    parse.__name__ = name  # argparse names the type in "invalid <name> value: 'x'"
    return parse


def int_at_least(low: int) -> Callable[[str], float]:
    return _bounded(f"int_at_least_{low}", int, low, strict=False)


positive_int = _bounded("positive_int", int, 1, strict=False)
non_negative_int = _bounded("non_negative_int", int, 0, strict=False)
positive_float = _bounded("positive_float", float, 0, strict=True)
non_negative_float = _bounded("non_negative_float", float, 0, strict=False)


def port(text: str) -> int:
    """A TCP port to listen on: 1-65535 (0 would mean "any free port", which no client could find)."""
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {value}")
    return value


def positive_floats(text: str) -> list[float]:
    """A comma-separated list of positive finite numbers (`--cache-weights 0.7,0.3`)."""
    try:
        return [positive_float(part) for part in text.split(",")]
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise argparse.ArgumentTypeError(f"must be positive numbers separated by commas, got {text!r}") from exc


def triplet_fields(text: str) -> tuple[str, str, str]:
    """--triplet-fields P1,P2,N: three distinct field names (ops/evaluate/text_triplets.py)."""
    from ops.evaluate.text_triplets import parse_fields

    try:
        return parse_fields(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
