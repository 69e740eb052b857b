"""A trained Y-Decoder on disk, inside (or beside) an exported VL-JEPA model directory.

    MODEL/y_decoder/y_decoder.json        format, YDecoderConfig (checkpoint relative: "lm")
    MODEL/y_decoder/lm/                   the causal LM + its tokenizer (save_pretrained)
    MODEL/y_decoder/mapper.safetensors    the embedding -> prefix MLP

Loading goes back through `YDecoder.from_pretrained`, the path a hub checkpoint takes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from model.y_decoder import YDecoder, YDecoderConfig

FORMAT = "vljepa-y-decoder/1"
DECODER_SUBDIR = "y_decoder"  # where a model directory keeps its decoder


def save_y_decoder(decoder: YDecoder, out_dir: str | Path, metadata: dict | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    decoder.lm.save_pretrained(out / "lm")
    decoder.tokenizer.save_pretrained(out / "lm")
    save_file({k: v.detach().cpu().contiguous() for k, v in decoder.mapper.state_dict().items()},
              out / "mapper.safetensors")
    config = dataclasses.replace(decoder.config, checkpoint="lm", num_layers=None)  # already sliced
    manifest = {"format": FORMAT, "config": config.to_dict(), "metadata": metadata or {}}
    (out / "y_decoder.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def decoder_dir_of(path: str | Path) -> Path | None:
    """The decoder directory for a decoder directory or a model directory holding one; else None."""
    path = Path(path)
    for candidate in (path, path / DECODER_SUBDIR):
        if (candidate / "y_decoder.json").exists():
            return candidate
    return None


def load_y_decoder(path: str | Path) -> YDecoder:
    root = decoder_dir_of(path)
    if root is None:
        raise ValueError(f"{path} holds no Y-decoder (no y_decoder.json): train one with `vljepa train-decoder`")
    manifest = json.loads((root / "y_decoder.json").read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{root}: unsupported decoder format {manifest.get('format')!r}")
    config = YDecoderConfig(**{**manifest["config"], "checkpoint": str(root.resolve() / "lm")})
    decoder = YDecoder.from_pretrained(config)
    decoder.mapper.load_state_dict(load_file(root / "mapper.safetensors"))
    return decoder
