"""`vljepa caption --model MODEL --media FILE [--query Q] [--beams K] [--json]`: text for one image
or clip: frames -> Ŝ_Y (one forward pass) -> the Y-decoder (greedy, or beam search with --beams).

MODEL needs a Y-decoder: the RUN/model that `vljepa train-decoder` writes, or --decoder DIR.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from model.export import load_model, read_manifest
from model.vljepa import VLJepa
from model.y_decoder import YDecoder
from model.y_decoder_export import decoder_dir_of, load_y_decoder
from ops.data.frames import decode_media, frames_to_input
from ops.data.samples import SampleError
from pipelines.cli.report import print_json_result, run_as_process
from pipelines.cli.types import positive_int


@torch.no_grad()
def caption(captioner, data: bytes, query: str | None = None, num_beams: int = 1) -> dict:
    model = captioner.model
    kind, frames = decode_media(data, model.config.x_encoder.image_size, model.config.x_encoder.num_frames)
    inputs = frames_to_input(frames)[None].to(model.logit_scale.device)
    embedding = model.embed_visual(model.encode_visual(inputs), [query if query is not None else captioner.caption_prompt])
    return {"kind": kind, "text": captioner.decoder.generate(embedding, num_beams=num_beams)[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vljepa caption", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory with a Y-decoder, or an MLflow model URI")
    parser.add_argument("--media", required=True, type=Path, help="image or video file")
    parser.add_argument("--query", default=None, help="query for the predictor (default: the model's captioning prompt)")
    parser.add_argument("--decoder", default=None, help="Y-decoder directory (default: the one inside MODEL)")
    parser.add_argument("--beams", type=positive_int, default=1, help="1: greedy decoding; more: beam search")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        captioner = load_captioner(args.model, args.decoder)
        result = caption(captioner, args.media.read_bytes(), args.query, args.beams)
    except (ValueError, OSError) as exc:  # UnsupportedMedia is a ValueError
        print(f"caption: {exc}", file=sys.stderr)
        return 2
    except SampleError as exc:
        print(f"caption: {args.media}: {exc}", file=sys.stderr)
        return 2
    print(result["text"])
    if args.json:
        print_json_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "caption"))


# Load what captioning needs: the VL-JEPA model, its Y-decoder and its captioning prompt, from
# a model directory (RUN/model of `vljepa train-decoder`) or an MLflow model URI.
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
