"""`vljepa index-build --model MODEL --cache CACHE [--cache ...] --index URI`: the retrieval index,
built offline on Ray Data.

    caches' text columns (driver)  -> the plan: which captioned videos the table lacks or holds
                                      with another caption, which it holds that no cache lists now
    read     CPU tasks: those rows' cached S_V, a row group at a time
    predict  actor pool: the exported model loaded once per actor (a GPU each when the cluster has
             them), Ŝ_Y under the model's captioning prompt, batched by token count
    write    Ray Data writes the rows into the Lance table (lance-ray): a new table is created, a
             table holding only older rows is appended to, one with changed captions gets the
             rows merged on `id` (LanceDB's merge_insert, from a staging table)
    then     stale cache items deleted; the ANN index (IVF_RQ by default, cosine) created once the
             table holds --ann-min-rows rows, or brought up to date with LanceDB's optimize()

URI is a LanceDB database: a local directory or s3://bucket/prefix (credentials from the AWS
variables), holding the table `videos` (ops/retrieval/table.py). A re-run with the same model and
caches predicts nothing and writes nothing; an index of another model is refused. Items added over
HTTP (no source cache) are never touched. `vljepa serve --index URI` serves the table.

One build at a time per index: a second concurrent build could add the same new rows twice.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from model.export import read_manifest, recorded_x_encoder
from ops.cache.feature_cache import cache_url
from ops.cache.files import require_feature_cache
from ops.retrieval.cache_items import BuildPlan, cache_names, cached_rows, list_caches, plan_build, shard_work
from ops.retrieval.table import (
    ANN_INDEXES,
    TABLE_NAME,
    VECTOR_COLUMN,
    absolute_uri,
    ann_config,
    ann_stats,
    caption_prompt,
    check_credentials,
    check_model,
    connect,
    ids_filter,
    model_fingerprint,
    rows_table,
    storage_options,
    table_names,
    table_schema,
    table_uri,
    vector_index_name,
)
from pipelines.cli.report import human_count, print_json_result, run_as_process, table
from pipelines.cli.types import positive_float, positive_int
from pipelines.models.source import WorkerModel, resolve_model_dir, source_for_workers

# Below this many rows a search scans every vector (milliseconds for 10k x 1536 float16), and an
# ANN index would be trained on too few: its partitions' centroids (and IVF_PQ's 256 codes per
# sub-vector) each want a few hundred rows.
ANN_MIN_ROWS = 10_000
# Ids per delete: one SQL filter each, one table version each.
DELETE_CHUNK = 10_000
# As cache-features: one read task per shard up to this many, past that consecutive shards share.
MAX_INPUT_BLOCKS = 4096


@dataclass(kw_only=True)
class IndexBuildConfig:
    model: str  # an exported model directory or an MLflow model URI
    index: str  # a LanceDB database: a local directory or s3://bucket/prefix
    caches: list[str] = field(default_factory=list)  # feature caches whose captioned videos the index holds
    ann_index: str = "ivf_rq"  # the ANN index type (ops.retrieval.table.ANN_INDEXES: why this default)
    num_partitions: int | None = None  # IVF partitions of the ANN index (None: LanceDB's, from the rows)
    num_sub_vectors: int | None = None  # ivf_pq's sub-vectors, dividing the embedding width (None: width / 16)
    ann_min_rows: int = ANN_MIN_ROWS  # create the ANN index once the table holds this many rows
    rebuild_ann: bool = False  # train the ANN index again (the table grew far past what it was trained on)
    actors: int | None = None  # predicting actors (None: one per GPU, else 1)
    batch_size: int = 64  # videos per forward pass
    actor_memory_gb: float = 2.0  # memory each actor reserves (the paper's model in bf16: ~4)
    address: str | None = None  # a Ray cluster (None: RAY_ADDRESS or a local instance)


@dataclass
class IndexBuildResult:
    index: str
    rows: int  # in the table after the build
    version: int  # the table's version after the build
    predicted: int  # videos predicted and written (new + replaced)
    added: int
    replaced: int  # held with another caption: predicted again
    unchanged: int
    dropped: int  # cache items no listed cache holds now
    caches: dict[str, dict]  # per cache name: videos, unchanged, new, changed
    ann_index: dict | None  # type, partitions, code_bytes, indexed_rows, unindexed_rows; None: exact search
    bytes: int  # the table's size on disk
    seconds: float


class VideoPredictor:
    """Ray Data actor: rows of cached S_V -> rows of the index table (Ŝ_Y under the model's
    captioning prompt, as the serving VisualPredictor predicts an uploaded video)."""

    def __init__(self, model: WorkerModel, schema: pa.Schema, caption_prompt: str):
        import torch

        from model.export import load_model

        model_dir = resolve_model_dir(model.source, model.tracking_uri, model.registry_uri)  # on this node
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(model_dir).eval().to(self.device)
        self.schema, self.caption_prompt = schema, caption_prompt

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import torch

        from model.tasks import embed_features
        from ops.train.collate import row_features, same_shape_batches

        features = row_features(batch["s_v_shape"], batch["s_v"])
        vectors = np.zeros((len(features), self.schema.field(VECTOR_COLUMN).type.list_size), dtype=np.float32)
        for rows in same_shape_batches([f.shape for f in features], len(features)):
            s_v = torch.from_numpy(np.stack([np.asarray(features[i], dtype=np.float32) for i in rows]))
            vectors[rows] = embed_features(self.model, s_v, [self.caption_prompt] * len(rows), self.device)
        return rows_table(self.schema, [str(i) for i in batch["id"]], ["video"] * len(features),
                          [str(c) for c in batch["caption"]], [str(s) for s in batch["source"]], vectors)


def held_cache_items(table) -> dict[str, str | None]:
    """{id: caption} of the table's cache items (its HTTP adds left out): two string columns read,
    no vectors."""
    held = table.to_lance().to_table(columns=["id", "caption"], filter="source IS NOT NULL")
    return dict(zip(held["id"].to_pylist(), held["caption"].to_pylist()))


def predict_and_write(plan: BuildPlan, model: WorkerModel, schema: pa.Schema, target: str, mode: str,
                      config: IndexBuildConfig) -> None:
    """Ray Data: the plan's rows -> Ŝ_Y -> the Lance table (or a staging table) at `target`, with
    Ray Data's progress while it runs."""
    import lance_ray
    import ray

    from pipelines.cluster.ray_runtime import gpus_available, init_ray

    init_ray(config.address)
    gpus = gpus_available()
    items = [shard_work(shard) for shard in plan.predict]
    dataset = (
        ray.data.from_items(items, override_num_blocks=min(len(items), MAX_INPUT_BLOCKS))
        .flat_map(cached_rows)
        .map_batches(VideoPredictor, fn_constructor_kwargs={"model": model, "schema": schema,
                                                            "caption_prompt": caption_prompt(schema)},
                     compute=ray.data.ActorPoolStrategy(size=config.actors or max(gpus, 1)),
                     num_gpus=1 if gpus else 0, memory=int(config.actor_memory_gb * 2**30),
                     batch_size=config.batch_size, batch_format="numpy")
    )
    lance_ray.write_lance(dataset, target, schema=schema, mode=mode, storage_options=storage_options(target))


def merge_staged(table, staging: str) -> None:
    """Upsert the staged rows on `id` (LanceDB's merge_insert: one atomic version), then remove
    the staging table."""
    import fsspec
    import lance

    staged = lance.dataset(staging, storage_options=storage_options(staging))
    try:
        (table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .execute(staged.scanner().to_reader()))
    finally:
        fs, path = fsspec.core.url_to_fs(staging)
        fs.rm(path, recursive=True)


def drop_stale(table, stale: list[str]) -> int:
    for start in range(0, len(stale), DELETE_CHUNK):
        table.delete(ids_filter(stale[start : start + DELETE_CHUNK]))
    return len(stale)


def keep_ann_index(table, config: IndexBuildConfig, changed: bool) -> dict | None:
    """Create the ANN index when the table is large enough (or asked to retrain it); otherwise, after
    any change, LanceDB's optimize(): compacts the small files of appends and deletes and adds the
    new rows to an existing index. Also a BTREE index on `id`, which deletes, merges and HTTP writes
    look rows up by. -> the ANN index's statistics, None without one."""
    indices = table.list_indices()
    if not any(list(index.columns) == ["id"] for index in indices) and table.count_rows() > 0:
        table.create_scalar_index("id", index_type="BTREE")
    name = vector_index_name(indices)
    if (name is None or config.rebuild_ann) and table.count_rows() >= config.ann_min_rows:
        table.create_index(VECTOR_COLUMN, replace=True,
                           config=ann_config(config.ann_index, config.num_partitions, config.num_sub_vectors))
        name = vector_index_name(table.list_indices())
    elif changed:
        table.optimize()
    if name is None:
        return None
    covered = table.index_stats(name)
    return {**ann_stats(table.to_lance(), name), "indexed_rows": covered.num_indexed_rows,
            "unindexed_rows": covered.num_unindexed_rows}


def print_plan(plan: BuildPlan, held: int) -> None:
    rows = [[name, c.videos, c.unchanged, c.new, c.changed] for name, c in plan.counts.items()]
    if rows:
        print(table(rows, ["cache", "captioned videos", "held unchanged", "new", "caption changed"]))
    print(f"{plan.to_predict} videos to predict; {len(plan.stale)} of the {held} cache items held to drop "
          "(no listed cache holds them now)", flush=True)


def run(config: IndexBuildConfig) -> IndexBuildResult:
    started = time.perf_counter()
    index = absolute_uri(config.index)
    check_credentials(index)
    model = source_for_workers(config.model)
    manifest = read_manifest(model.local_dir)
    width = manifest["config"]["embed_dim"]
    ann_config(config.ann_index, config.num_partitions, config.num_sub_vectors)  # refused now, not after predicting
    if config.num_sub_vectors is not None and width % config.num_sub_vectors:
        raise ValueError(f"--num-sub-vectors {config.num_sub_vectors} does not divide the embedding width {width}")
    fingerprint = model_fingerprint(model.local_dir)
    schema = table_schema(width, fingerprint, manifest["metadata"].get("caption_prompt", ""))
    caches = [cache_url(cache) for cache in config.caches]
    cache_names(caches)  # one line for a cache given twice or two of one name, before anything is read
    x_encoder = recorded_x_encoder(model.local_dir)
    shards = {cache: require_feature_cache(cache, x_encoder, reader=f"model {config.model}") for cache in caches}

    db = connect(index)
    exists = TABLE_NAME in table_names(db)
    held: dict[str, str | None] = {}
    if exists:
        existing = db.open_table(TABLE_NAME)
        check_model(existing.schema, fingerprint, index)
        held = held_cache_items(existing)
    if not caches and held:
        raise ValueError(f"index {index} holds {len(held)} items of feature caches: index-build with no --cache would "
                         "drop them all; name the caches the index keeps (--cache CACHE ...)")
    print(f"index {index}: {'table ' + TABLE_NAME + ' of model ' + fingerprint if exists else 'new table'}; "
          f"reading the captions of {sum(len(s) for s in shards.values())} cached shards", flush=True)
    plan = plan_build(list_caches(shards), held)
    print_plan(plan, len(held))

    if plan.to_predict and not exists:
        predict_and_write(plan, model, schema, table_uri(index), "create", config)
    elif plan.to_predict and not plan.changed:
        predict_and_write(plan, model, schema, table_uri(index), "append", config)
    elif plan.to_predict:
        staging = f"{index.rstrip('/')}/_staging/{uuid.uuid4().hex}.lance"
        predict_and_write(plan, model, schema, staging, "create", config)
        merge_staged(db.open_table(TABLE_NAME), staging)
    elif not exists:  # nothing to predict: an empty index, for items added over HTTP
        db.create_table(TABLE_NAME, schema=schema)

    built = db.open_table(TABLE_NAME)
    dropped = drop_stale(built, plan.stale)
    ann = keep_ann_index(built, config, changed=bool(plan.to_predict or dropped))
    built.checkout_latest()
    counts = plan.counts.values()
    return IndexBuildResult(
        index=index, rows=built.count_rows(), version=built.version, predicted=plan.to_predict,
        added=plan.new, replaced=plan.changed, unchanged=sum(c.unchanged for c in counts), dropped=dropped,
        caches={name: asdict(c) for name, c in plan.counts.items()}, ann_index=ann,
        bytes=int(built.stats()["total_bytes"]), seconds=round(time.perf_counter() - started, 2))


def report(result: IndexBuildResult, config: IndexBuildConfig) -> None:
    rate = result.predicted / result.seconds if result.seconds > 0 else 0.0
    if result.ann_index:
        ann = result.ann_index
        search = (f"{ann['type']} ANN index, {ann['partitions']} partitions, {ann['code_bytes']} bytes a vector, "
                  f"{ann['indexed_rows']} rows indexed ({ann['unindexed_rows']} not yet: scanned exactly)")
    else:
        search = f"exact search (an ANN index from {config.ann_min_rows} rows)"
    print(f"\nindex-build: {result.index}, version {result.version}, in {result.seconds:.1f}s")
    print(table([["rows", result.rows], ["predicted", result.predicted], ["added", result.added],
                 ["replaced (caption changed)", result.replaced], ["unchanged", result.unchanged],
                 ["dropped", result.dropped], ["bytes", human_count(result.bytes)],
                 ["predicted/s", f"{rate:.1f}"], ["search", search]], ["", "value"]))


def parse_args(argv: list[str] | None) -> tuple[IndexBuildConfig, bool]:
    defaults = IndexBuildConfig(model="", index="")
    parser = argparse.ArgumentParser(prog="vljepa index-build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="exported model directory or models:/NAME/VERSION")
    parser.add_argument("--cache", dest="caches", action="append", default=[],
                        help="feature cache whose captioned videos the index holds; repeat for several "
                             "(item ids: <cache directory's name>/<shard>/<key>)")
    parser.add_argument("--index", required=True, help="LanceDB database: a local directory or s3://bucket/prefix")
    parser.add_argument("--ann-index", choices=ANN_INDEXES, default=defaults.ann_index,
                        help="LanceDB's ANN index type, cosine distance (ivf_rq: RaBitQ, the most recall per "
                             "millisecond measured: docs/benchmarks.md)")
    parser.add_argument("--num-partitions", type=positive_int, default=None,
                        help="IVF partitions of the ANN index (default: LanceDB's, from the table's rows)")
    parser.add_argument("--num-sub-vectors", type=positive_int, default=None,
                        help="--ann-index ivf_pq: sub-vectors, dividing the embedding width (default: width / 16)")
    parser.add_argument("--ann-min-rows", type=positive_int, default=defaults.ann_min_rows,
                        help="create the ANN index once the table holds this many rows (exact search below)")
    parser.add_argument("--rebuild-ann", action="store_true",
                        help="train the ANN index again (after the table grew far past what it was trained on)")
    parser.add_argument("--actors", type=positive_int, default=None, help="predicting actors (default: GPUs, else 1)")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="videos per forward pass")
    parser.add_argument("--actor-memory-gb", type=positive_float, default=defaults.actor_memory_gb,
                        help="memory each predicting actor reserves (the paper's model in bf16: ~4)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    parser.add_argument("--json", action="store_true")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    return IndexBuildConfig(**args), as_json


def main(argv: list[str] | None = None) -> int:
    config, as_json = parse_args(argv)
    result = run(config)
    report(result, config)
    if as_json:
        print_json_result(asdict(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "index-build"))
