"""Loading a checkpoint: one clear error when it cannot be loaded, and no progress bar in logs.

The paper preset's checkpoints come from the Hugging Face hub, and one of them (Llama) is gated:
a machine without hub access, or without a token that was granted Llama's licence, fails deep in
`from_pretrained` with an OSError. The user needs to know which checkpoint, why, and what runs
without the hub. A ValueError carries that (the project's user-error type: `vljepa` verbs print it
as one line).

transformers >= 5 draws a "Loading weights" progress bar at every `from_pretrained`. On a terminal
it says something; written to a file it is two lines of `0%|...|100%` per component, in every
Ray Data actor, training worker and Serve replica log (33 of them in one `make demo`). So it is
drawn only when stderr is a terminal. Download bars (huggingface_hub's) are left alone: a
multi-GB download is worth watching wherever it runs.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

WEIGHT_BAR = "Loading weights"  # the bar's description in transformers.core_model_loading

OFFLINE_HINT = ("the paper preset loads its checkpoints from the Hugging Face hub (meta-llama/Llama-3.2-1B is "
                "gated: accept its licence on the hub, then `hf auth login` or set HF_TOKEN); without hub access "
                "use --preset minilm, tiny or paper-random, or an exported model directory")


class CheckpointUnavailable(ValueError):
    """A checkpoint (hub id or local directory) that could not be loaded."""


@contextlib.contextmanager
def loading(checkpoint: str) -> Iterator[None]:
    """Around `from_pretrained(checkpoint)`: its OSError becomes CheckpointUnavailable, and its
    weight-loading bar is drawn on terminals only."""
    try:
        with weight_bar_on_terminals_only():
            yield
    except OSError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        local = Path(checkpoint).is_dir()
        hint = "the directory is not a complete save_pretrained checkpoint" if local else OFFLINE_HINT
        raise CheckpointUnavailable(f"cannot load checkpoint {checkpoint!r}: {reason} ({hint})") from exc


@contextlib.contextmanager
def weight_bar_on_terminals_only() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    if sys.stderr.isatty():
        yield
        return
    previous = None  # a hook someone else set: called by ours, and restored after

    def hook(factory, args, kwargs):
        if kwargs.get("desc") == WEIGHT_BAR:
            kwargs = {**kwargs, "disable": True}
        return previous(factory, args, kwargs) if previous else factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(hook)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)


def check_reachable(checkpoint: str) -> None:
    """Fail here, in one line, when `checkpoint` cannot be had: a job's Ray actors would otherwise
    each fail to load it, ending the job with an actor-death traceback hundreds of lines long. Only
    the config is fetched (a few KB); the weights are the actors' to download."""
    from transformers import AutoConfig

    with loading(checkpoint):
        AutoConfig.from_pretrained(checkpoint)
