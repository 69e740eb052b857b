"""One clear error when a checkpoint cannot be loaded, instead of transformers' traceback.

The paper preset's checkpoints come from the Hugging Face hub, and one of them (Llama) is gated:
a machine without hub access, or without a token that was granted Llama's licence, fails deep in
`from_pretrained` with an OSError. The user needs to know which checkpoint, why, and what runs
without the hub. A ValueError carries that (the project's user-error type: `vljepa` verbs print it
as one line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

OFFLINE_HINT = ("the paper preset loads its checkpoints from the Hugging Face hub (meta-llama/Llama-3.2-1B is "
                "gated: accept its licence on the hub, then `hf auth login` or set HF_TOKEN); without hub access "
                "use --preset minilm, tiny or paper-random, or an exported model directory")


class CheckpointUnavailable(ValueError):
    """A checkpoint (hub id or local directory) that could not be loaded."""


@contextlib.contextmanager
def loading(checkpoint: str) -> Iterator[None]:
    """Turn the OSError of a failed `from_pretrained(checkpoint)` into CheckpointUnavailable."""
    try:
        yield
    except OSError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        local = Path(checkpoint).is_dir()
        hint = "the directory is not a complete save_pretrained checkpoint" if local else OFFLINE_HINT
        raise CheckpointUnavailable(f"cannot load checkpoint {checkpoint!r}: {reason} ({hint})") from exc


def check_reachable(checkpoint: str) -> None:
    """Fail here, in one line, when `checkpoint` cannot be had: a job's Ray actors would otherwise
    each fail to load it, ending the job with an actor-death traceback hundreds of lines long. Only
    the config is fetched (a few KB); the weights are the actors' to download."""
    from transformers import AutoConfig

    with loading(checkpoint):
        AutoConfig.from_pretrained(checkpoint)
