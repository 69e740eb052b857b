"""`vljepa <verb> ...`: one entry point dispatching to one module per job.

Every verb is also `python -m pipelines.<module>`, with the same arguments.
"""

from __future__ import annotations

import importlib
import sys

from pipelines.cli.report import run_as_process

# verb -> (module, one-line description). Only verbs that exist are listed.
VERBS: dict[str, tuple[str, str]] = {
    "summary": ("pipelines.models.summary", "parameter counts per component, from config alone"),
    "sample-data": ("pipelines.data.sample_data", "write the embedded sample dataset (train/ and eval/ shards)"),
    "make-shards": ("pipelines.data.make_shards", "turn a folder / CSV / JSONL of your media into shards"),
    "cache-features": ("pipelines.cache.cache_features", "decode shards and cache frozen x-encoder features (Ray Data)"),
    "train": ("pipelines.train.train", "optimise predictor + y-encoder on Ray Train, tracked in MLflow"),
    "evaluate": ("pipelines.evaluate.evaluate", "zero-shot classification, retrieval and VQA against chance"),
    "train-decoder": ("pipelines.decode.train_decoder", "train the Y-decoder (embedding -> text) on Ray Train"),
    "caption": ("pipelines.decode.caption", "decode a caption for one image or clip"),
    "stream": ("pipelines.decode.stream", "selective decoding: events of a long video, decoded only where meaning changes"),
    "export": ("pipelines.models.export", "a self-contained model directory from a run or a preset"),
    "serve": ("pipelines.serve.app", "the inference graph on Ray Serve over HTTP"),
    "live": ("pipelines.decode.live", "feed a server's live endpoint frame by frame; print events as they are decoded"),
    "index-build": ("pipelines.retrieval.index_build", "predict feature caches' videos into a LanceDB retrieval index (Ray Data)"),
    "submit": ("pipelines.cluster.submit", "run any verb above as a Ray job on a cluster (status / logs / stop too)"),
    "demo": ("pipelines.demo.demo", "the main job end to end on the embedded sample data"),
}


def usage() -> str:
    width = max(len(verb) for verb in VERBS)
    lines = ["usage: vljepa <verb> [args...]   (vljepa <verb> --help for its arguments)", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {description}" for verb, (_, description) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """argv None: this is the process's entry point (the `vljepa` script, `python -m pipelines.cli`);
    a list: called in-process (tests, notebooks), which keeps Ray connected afterwards."""
    as_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"vljepa: unknown verb {verb!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[verb][0])
    if as_process:  # the --json line stays last even when Ray logs arrive late
        return run_as_process(lambda: module.main(rest), verb)
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
