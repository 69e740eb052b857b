"""Load what captioning needs: the VL-JEPA model, its Y-decoder and its captioning prompt, from
a model directory (RUN/model of `vljepa train-decoder`) or an MLflow model URI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from model.export import load_model, read_manifest
from model.vljepa import VLJepa
from model.y_decoder import YDecoder
from model.y_decoder_export import decoder_dir_of, load_y_decoder


@dataclass
class Captioner:
    model: VLJepa
    decoder: YDecoder
    caption_prompt: str
    model_dir: Path


def load_captioner(source: str, decoder: str | None = None) -> Captioner:
    from pipelines.models.source import resolve_model_dir

    model_dir = resolve_model_dir(source)
    decoder_path = decoder or model_dir
    if decoder_dir_of(decoder_path) is None:
        raise ValueError(f"{decoder_path} has no Y-decoder: train one with `vljepa train-decoder --model {source} ...` "
                         "and use its RUN/model, or pass --decoder")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Captioner(model=load_model(model_dir).eval().to(device),
                     decoder=load_y_decoder(decoder_path).eval().to(device),
                     caption_prompt=read_manifest(model_dir)["metadata"].get("caption_prompt", ""),
                     model_dir=model_dir)
