"""`vljepa serve --model MODEL [--host 127.0.0.1] [--port 8000]`: the inference graph on Ray Serve.

    HTTP -> Ingress (FastAPI: validation, auth, size limit)
              -> VisualPredictor (x-encoder + predictor, @serve.batch)
              -> TextEncoder     (y-encoder, @serve.batch, LRU label cache)
              -> RetrievalIndex  (the LanceDB table `vljepa index-build` wrote: --index URI)
              -> TextDecoder     (Y-decoder, @serve.batch; when the model has one: caption, stream)

MODEL is an exported model directory or an MLflow model URI. Binds 127.0.0.1 unless told
otherwise: put an authenticating reverse proxy (TLS, rate limits) in front before exposing it,
and set a token (VLJEPA_SERVE_TOKEN or --token-file). `build_app(args)` is the import path for
`serve run` / `serve deploy` with infra/serve_config.yaml; its arguments are
`pipelines.serve.args.ServeAppArgs`, which Serve validates before building.

No `from __future__ import annotations` here: Serve reads build_app's annotation at runtime to
validate the arguments against ServeAppArgs; a string annotation would skip that.
"""

import argparse
import os
import signal
import threading
from pathlib import Path

from model.y_decoder_export import decoder_dir_of
from ops.retrieval.table import absolute_uri, model_fingerprint, open_table
from pipelines.cli.report import run_as_process
from pipelines.cli.types import non_negative_float, non_negative_int, port, positive_float, positive_int
from pipelines.cluster.net import check_can_listen
from pipelines.models.source import is_mlflow_uri, resolve_model_dir, source_for_workers
from pipelines.serve.args import TOKEN_ENV, ServeAppArgs

MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def check_index(model_dir: Path, args: ServeAppArgs) -> tuple[str, str] | None:
    """(the index's absolute URI, the model's fingerprint), after opening the index: a URI with no
    index table, S3 without credentials, or an index of another model's predictions fail here, not
    in every index replica's constructor (which Serve would restart). None without an index."""
    if not args.index:
        return None
    uri, fingerprint = absolute_uri(args.index), model_fingerprint(model_dir)
    open_table(uri, fingerprint)
    return uri, fingerprint


def serving_token(args: ServeAppArgs) -> str | None:
    """The bearer token: `token_file`'s content, else `token`, else $VLJEPA_SERVE_TOKEN; None: no
    auth. A token asked for but empty (an empty secret mount, an unset variable expanded to "") is
    refused: serving on without auth would expose what the operator meant to protect."""
    if args.token_file:
        token, origin = Path(args.token_file).read_text().strip(), f"token file {args.token_file}"
    elif args.token is not None:
        token, origin = args.token.strip(), "token"
    elif TOKEN_ENV in os.environ:
        token, origin = os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    else:
        return None
    if not token:
        raise ValueError(f"{origin} is empty: refusing to serve without the authentication it asks for "
                         f"(give a token, or unset it to serve without one)")
    return token


def build_app(args: ServeAppArgs):
    """Serve application builder. `serve run` / `serve deploy` hand it their `args` already validated
    into ServeAppArgs (an unknown key or a bad value fails the deploy, naming the field)."""
    # imported here: ray.serve reads its mode from the environment at import (`main` sets it first)
    from pipelines.retrieval.deployment import IndexSettings, RetrievalIndex
    from pipelines.serve.deployments import TextDecoder, TextEncoder, VisualPredictor
    from pipelines.serve.ingress import Ingress, ServeSettings

    # Replicas get the source, not this process's path to it: on a cluster they run on other nodes,
    # where a directory this builder downloaded an MLflow model into does not exist. Each resolves
    # it there (pipelines.models.source); resolving it here too fails early on a bad source and says
    # whether the model carries a Y-decoder.
    model_dir, source, _, _ = source_for_workers(args.model)
    index_of = check_index(model_dir, args)
    token = serving_token(args)
    settings = ServeSettings(model=source, token=token, max_request_bytes=int(args.max_request_mb * 2**20),
                             max_stream_windows=args.max_stream_windows)
    env = replica_env(source)
    visual = VisualPredictor.options(ray_actor_options={"num_cpus": args.num_cpus, "num_gpus": args.num_gpus, **env})
    text = TextEncoder.options(ray_actor_options={"num_cpus": args.num_cpus, **env})
    index = None
    if index_of is not None:
        index = RetrievalIndex.options(num_replicas=args.index_replicas, ray_actor_options={"num_cpus": 0}).bind(
            *index_of, IndexSettings(probe=args.index_probe, refine=args.index_refine, refresh_s=args.index_refresh_s))
    decoder = None
    if decoder_dir_of(model_dir) is not None:
        decoder = TextDecoder.options(ray_actor_options={
            "num_cpus": args.num_cpus, "num_gpus": args.decoder_num_gpus, **env}).bind(source)
    return Ingress.options(ray_actor_options={"num_cpus": 0, **env}).bind(
        visual.bind(source, args.max_batch_size), text.bind(source), index, settings, decoder)


def replica_env(source: str) -> dict:
    """For an MLflow URI, the registry this builder resolved it against, so the replicas resolve the
    same URI to the same model (their nodes' environment may name no MLflow server, or another).
    Only the URIs travel: credentials stay in the nodes' own environment."""
    env_vars = {name: os.environ[name] for name in MLFLOW_URI_VARIABLES if os.environ.get(name)}
    return {"runtime_env": {"env_vars": env_vars}} if is_mlflow_uri(source) and env_vars else {}


def local_replica_cpus(model_dir: Path) -> float:
    """CPUs per model replica on a local instance: 1, or an equal share of a machine with fewer CPUs
    than model replicas. A 2-core machine serving a model with a Y-decoder has three (visual, text,
    decoder): at 1 CPU each the third never started, and `vljepa serve` waited for it without a
    word, /v1/caption hanging. Floored to hundredths: Ray counts resources in fixed point, and
    three shares of 2/3 rounded up would ask for more than 2."""
    import math

    import ray

    replicas = 3 if decoder_dir_of(model_dir) is not None else 2
    cpus = ray.cluster_resources().get("CPU", 0)
    share = min(1.0, math.floor(100 * cpus / replicas) / 100)
    if share < 1:
        print(f"serve: {cpus:g} CPUs for {replicas} model replicas: {share:g} CPU each (--num-cpus sets it)", flush=True)
    return share


def start(args: ServeAppArgs, host: str = "127.0.0.1", port: int = 8000, name: str = "vljepa"):
    """Deploy the application on the current Ray instance; returns once it is ready."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    return serve.run(build_app(args), name=name, route_prefix="/", blocking=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vljepa serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="exported model directory or models:/NAME/VERSION")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port, default=8000)
    parser.add_argument("--token-file", default=None, help="file holding the bearer token")
    defaults = ServeAppArgs.model_fields
    parser.add_argument("--max-request-mb", type=positive_float, default=defaults["max_request_mb"].default)
    parser.add_argument("--max-stream-windows", type=positive_int, default=defaults["max_stream_windows"].default,
                        help="/v1/stream refuses (422) a video giving more windows, before decoding it")
    parser.add_argument("--index", default=None,
                        help="the retrieval index `vljepa index-build` wrote for this model: a LanceDB database, a local "
                             "directory or s3://bucket/prefix (default: none; the retrieval endpoints answer 501)")
    parser.add_argument("--index-replicas", type=positive_int, default=defaults["index_replicas"].default,
                        help="RetrievalIndex replicas sharing the one table (searches spread over them)")
    parser.add_argument("--index-probe", type=positive_int, default=None,
                        help="IVF partitions a search probes unless the request says (default: LanceDB's, 20)")
    parser.add_argument("--index-refine", type=non_negative_int, default=defaults["index_refine"].default,
                        help="re-score refine x k ANN candidates with their stored vectors (0: compressed distances)")
    parser.add_argument("--index-refresh-s", type=non_negative_float, default=defaults["index_refresh_s"].default,
                        help="how stale an index read may be: 0 looks for other replicas' writes at every read")
    parser.add_argument("--num-gpus", type=non_negative_float, default=None, help="GPUs per visual replica (default: 1 if any)")
    parser.add_argument("--num-cpus", type=non_negative_float, default=None,
                        help="CPUs per model replica (visual, text, decoder); default 1, or on a local instance with "
                             "fewer CPUs than replicas an equal share, so that all of them start")
    parser.add_argument("--metrics-port", type=port, default=None,
                        help="a local instance's Prometheus metrics on this port, Serve's and the application's "
                             "(vljepa_*; docs/cluster.md); default: a port Ray picks. A cluster sets it with "
                             "`ray start --metrics-export-port`")
    parser.add_argument("--address", default=None)
    args = parser.parse_args(argv)
    if args.metrics_port is not None and (args.address or os.environ.get("RAY_ADDRESS")):
        parser.error("--metrics-port is for a local instance: a cluster's nodes export their metrics on the port "
                     "`ray start --metrics-export-port` gave them")

    from pipelines.cluster.ray_runtime import (
        SERVE_THROUGHPUT_ENV,
        gpus_available,
        init_ray,
        prefer_serve_throughput_mode,
    )

    # a local instance gets the throughput-optimized mode; a cluster keeps its own environment's
    local = not (args.address or os.environ.get("RAY_ADDRESS"))
    optimized = prefer_serve_throughput_mode() if local else os.environ.get(SERVE_THROUGHPUT_ENV) == "1"
    from ray import serve

    if local:  # a cluster's proxies listen on its nodes, not here
        check_can_listen(args.host, args.port)
        if args.metrics_port is not None:
            check_can_listen("127.0.0.1", args.metrics_port)
    app_args = ServeAppArgs(model=args.model, token_file=args.token_file, max_request_mb=args.max_request_mb,
                            max_stream_windows=args.max_stream_windows, index=args.index,
                            index_replicas=args.index_replicas, index_probe=args.index_probe,
                            index_refine=args.index_refine, index_refresh_s=args.index_refresh_s)
    # checked before Ray starts (build_app checks them again, for `serve run`)
    serving_token(app_args)
    model_dir = resolve_model_dir(args.model)
    check_index(model_dir, app_args)
    init_ray(args.address, metrics_export_port=args.metrics_port)
    num_gpus = args.num_gpus if args.num_gpus is not None else (1 if gpus_available() else 0)
    num_cpus = args.num_cpus
    if num_cpus is None:
        num_cpus = local_replica_cpus(model_dir) if local else app_args.num_cpus
    start(app_args.model_copy(update={"num_gpus": num_gpus, "num_cpus": num_cpus}), host=args.host, port=args.port)
    mode = "throughput-optimized" if optimized else "Ray's default"
    metrics = f"; metrics: http://127.0.0.1:{args.metrics_port}/metrics" if args.metrics_port is not None else ""
    print(f"serving on http://{args.host}:{args.port}  (OpenAPI: /docs, /openapi.json; Serve mode: {mode}, "
          f"{SERVE_THROUGHPUT_ENV}{metrics}); Ctrl-C stops", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    serve.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "serve"))
