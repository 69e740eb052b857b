"""Which x-encoder a set of visual features comes from.

A feature cache records it in its fingerprint (`vljepa cache-features`); an exported model records
the one its predictor was trained on (MODEL/vljepa.json, `x_encoder_identity`). Anything that reads
cached S_V with a model (train, evaluate, train-decoder on predictions, Serve's retrieval index)
compares the two first: features of another encoder fail in a worker on a shape mismatch, or,
with the same width, give quietly meaningless numbers.

The identity is the checkpoint's id (a hub id, or a local directory's name) and a hash of its
architecture config. An exported model's x-encoder lives in MODEL/x_encoder/, whose name says
nothing, so the model carries the identity of the checkpoint it was built from, and a model
built from an exported one carries it on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# fields of a saved config that record how it was written, not what it is
VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "dtype", "torch_dtype")
MANIFEST_KEY = "x_encoder_identity"


def config_hash(config: dict) -> str:
    stable = {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def x_encoder_identity(checkpoint: str) -> dict[str, str]:
    """The identity of an x-encoder checkpoint (hub id or local directory): the fields a feature
    cache's fingerprint records."""
    from model.hub_configs import architecture_config  # transformers: imported only when asked

    return {"x_encoder": Path(checkpoint).name if Path(checkpoint).is_dir() else checkpoint,
            "x_encoder_config_hash": config_hash(architecture_config(checkpoint).to_dict())}


def identity_to_export(checkpoint: str) -> dict[str, str] | None:
    """What a model built on `checkpoint` records when exported: the checkpoint's own identity, or,
    when it is an exported model's x_encoder/ directory, the identity that model recorded (None
    for a model exported before models recorded one: unknown, so not checked)."""
    exported = Path(checkpoint).parent / "vljepa.json"
    if Path(checkpoint).is_dir() and exported.is_file():
        return json.loads(exported.read_text()).get(MANIFEST_KEY)
    return x_encoder_identity(checkpoint)
