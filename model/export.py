"""A self-contained model directory: every weight, config and tokenizer, no hub access needed.

    MODEL/vljepa.json            format, VLJepaConfig (checkpoints relative to MODEL), metadata,
                                 the identity of the x-encoder it was built on (model.encoder_identity)
    MODEL/x_encoder/             VJEPA2Model (encoder) + config   (save_pretrained)
    MODEL/predictor/             the sliced LlamaModel + config + query tokenizer
    MODEL/y_encoder/             the text encoder + config + target tokenizer
    MODEL/heads.safetensors      visual projection, predictor head, y-encoder head, logit scale

Loading rebuilds through `build_vljepa` (each component's `from_pretrained`), then restores the
heads, so an exported model and a preset load by the same code path.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.build import build_vljepa
from model.config import VLJepaConfig
from model.encoder_identity import MANIFEST_KEY, identity_to_export
from model.vljepa import VLJepa

FORMAT = "vljepa-model/1"
HEAD_PREFIXES = ("predictor.vision_proj.", "predictor.head.", "y_encoder.head.", "logit_scale")


def save_model(model: VLJepa, out_dir: str | Path, metadata: dict | None = None) -> Path:
    out = Path(out_dir)
    # read before anything is written: the source may be a model exported to this same directory
    x_encoder = identity_to_export(model.config.x_encoder.checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    model.x_encoder.vjepa.save_pretrained(out / "x_encoder")
    model.predictor.llm.save_pretrained(out / "predictor")
    model.y_encoder.text_model.save_pretrained(out / "y_encoder")
    model.query_tokenizer.save_pretrained(out / "predictor")
    model.target_tokenizer.save_pretrained(out / "y_encoder")
    heads = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(HEAD_PREFIXES)}
    save_file(heads, out / "heads.safetensors")
    config = dataclasses.replace(
        model.config,
        x_encoder=dataclasses.replace(model.config.x_encoder, checkpoint="x_encoder"),
        predictor=dataclasses.replace(model.config.predictor, checkpoint="predictor", layer_start=0,
                                      num_layers=len(model.predictor.llm.layers)),
        y_encoder=dataclasses.replace(model.config.y_encoder, checkpoint="y_encoder"),
    )
    manifest = {"format": FORMAT, "config": config.to_dict(), "metadata": metadata or {}, MANIFEST_KEY: x_encoder}
    (out / "vljepa.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def read_manifest(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "vljepa.json"
    if not path.exists():
        raise ValueError(f"{model_dir} is not an exported VL-JEPA model (no vljepa.json)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{model_dir}: unsupported model format {manifest.get('format')!r}")
    return manifest


def recorded_x_encoder(model_dir: str | Path) -> dict[str, str] | None:
    """The identity of the x-encoder whose features the model reads (model.encoder_identity), as
    its export recorded it; None for a model exported before models recorded one."""
    return read_manifest(model_dir).get(MANIFEST_KEY)


def load_model(model_dir: str | Path, *, dtype: torch.dtype | None = None) -> VLJepa:
    root = Path(model_dir).resolve()
    config = VLJepaConfig.from_dict(read_manifest(root)["config"])
    for component in (config.x_encoder, config.predictor, config.y_encoder):
        component.checkpoint = str(root / component.checkpoint)
    model = build_vljepa(config, dtype=dtype)
    missing, unexpected = model.load_state_dict(load_file(root / "heads.safetensors"), strict=False)
    absent = [k for k in model.state_dict() if k.startswith(HEAD_PREFIXES) and k in missing]
    if absent or unexpected:
        raise ValueError(f"{model_dir}: heads.safetensors does not match the model (missing {absent}, unexpected {unexpected})")
    return model
