"""The Serve application's arguments: what `serve run pipelines.serve:build_app key=value ...`, the
`args:` of infra/serve_config.yaml (`serve deploy`, a KubeRay RayService) and `vljepa serve` give
`pipelines.serve.build_app`.

A pydantic model rather than a dataclass because Ray Serve validates a builder's arguments against
the model its parameter is annotated with, before anything is built: a misspelt key
(`max_requets_mb`) or an impossible value fails the deploy with pydantic's message naming the field,
where a plain dict would have dropped it silently and served with the default. Values given on the
`serve run` command line arrive as strings; pydantic converts them ("32" -> 32.0).
"""

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    index_cache: list[str] = Field([], description="feature caches whose captioned videos fill the index "
                                                  "(one, or a list); their items' ids are <cache name>/<shard>/<key>")
    index_store: str | None = Field(None, description="a directory keeping the index's items across restarts "
                                                      "(on a cluster: a volume the index's node mounts); "
                                                      "default: in memory only")
    index_shards: int = Field(1, ge=1, description="replicas the retrieval index is split over, each holding and "
                                                  "searching the ids that hash to it (deployments RetrievalIndex, "
                                                  "RetrievalIndex_1, ...); a store keeps its shard count")
    index_lists: int = Field(0, ge=0, description="approximate retrieval: each index shard files its items under this "
                                                 "many centroids (k-means, once it holds 39 per list) and a search "
                                                 "scores only the `index_probe` lists nearest the query; 0: exact")
    index_probe: int = Field(16, ge=1, description="lists a search scores when index_lists is set: more is slower "
                                                  "and misses fewer items (index_lists or more: exact)")

    @field_validator("index_cache", mode="before")
    @classmethod
    def one_cache_or_several(cls, value):
        """`index_cache: cache/eval` (one, as `serve run ... index_cache=cache/eval` gives it) or a list."""
        return [value] if isinstance(value, str) else [] if value is None else value
