"""The Serve application's arguments: what `serve run pipelines.serve.app:build_app key=value ...`, the
`args:` of infra/serve_config.yaml (`serve deploy`, a KubeRay RayService) and `vljepa serve` give
`pipelines.serve.app.build_app`.

A pydantic model rather than a dataclass because Ray Serve validates a builder's arguments against
the model its parameter is annotated with, before anything is built: a misspelt key
(`max_requets_mb`) or an impossible value fails the deploy with pydantic's message naming the field,
where a plain dict would have dropped it silently and served with the default. Values given on the
`serve run` command line arrive as strings; pydantic converts them ("32" -> 32.0).

A module of its own, apart from app.py, because `vljepa live` (a client) reads TOKEN_ENV here
without importing Ray Serve, LanceDB and the model that app.py needs.
"""

from pydantic import BaseModel, ConfigDict, Field

TOKEN_ENV = "VLJEPA_SERVE_TOKEN"  # where `vljepa serve` (and `vljepa live`) read the token when no file names it


class ServeAppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="an exported model directory or an MLflow model URI")
    token: str | None = Field(None, description="bearer token every endpoint but /healthz requires; "
                                                "default: VLJEPA_SERVE_TOKEN from the environment")
    token_file: str | None = Field(None, description="a file holding the token (wins over `token`)")
    max_request_mb: float = Field(64, gt=0, description="request body limit, checked before reading it")
    max_stream_windows: int = Field(4096, ge=1, description="/v1/stream: most windows a video may give")
    max_batch_size: int = Field(16, ge=1, description="visual requests per batch; 1 disables dynamic batching")
    num_cpus: float = Field(1, ge=0, description="CPUs per model replica (visual, text, decoder)")
    num_gpus: float = Field(0, ge=0, description="GPUs per visual replica")
    decoder_num_gpus: float = Field(0, ge=0, description="GPUs per Y-decoder replica")
    index: str | None = Field(None, description="the retrieval index: a LanceDB database (a local directory or "
                                                "s3://bucket/prefix) that `vljepa index-build` wrote for this "
                                                "model; None: no retrieval endpoints (501)")
    index_replicas: int = Field(1, ge=1, description="RetrievalIndex replicas, each reading (and writing) the one "
                                                    "table")
    index_probe: int | None = Field(None, ge=1, description="IVF partitions a search probes unless the request "
                                                           "says (default: LanceDB's, 20)")
    index_refine: int = Field(10, ge=0, description="re-score refine x k ANN candidates with their stored vectors "
                                                    "(0: the compressed distances alone)")
    index_refresh_s: float = Field(0, ge=0, description="how stale an index read may be: 0 checks for other "
                                                       "replicas' commits at every read (one manifest read each, a "
                                                       "request on S3)")
