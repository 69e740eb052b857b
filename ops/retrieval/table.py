"""The retrieval index: one LanceDB table of predicted embeddings, at a URI that is a LanceDB
database (a local directory or `s3://bucket/prefix`) holding the table `videos`.

    id       `<cache name>/<shard>/<key>` for a feature cache's videos (ops/retrieval/cache_items.py),
             the client's id for an item added over HTTP
    kind     "video" or "image"
    caption  a cache item's caption; null for an HTTP add
    source   the feature cache a row was predicted from; null for an HTTP add (no build touches those)
    vector   Ŝ_Y under the captioning prompt, L2-normalised, float16

float16, not float32: half the bytes on disk, in the page cache and over the network from S3 (3 KB
per 1536-d item instead of 6 KB), and LanceDB indexes and searches it directly. The cost is
precision: Ŝ_Y is unit-norm, and a cosine computed from float16 components (LanceDB casts the
query to the column's type too) is off by at most ~7e-5 (2,000 random unit vectors x 50
queries, 384-d and 1536-d), far below the gaps between the scores of different videos; exact ties
are still ranked by id.

The table's schema metadata names the model whose predictions it holds (`model_fingerprint`), so
an index is never searched with another model's text embeddings or filled with a mix of two
models' predictions.

Credentials and the endpoint of S3 come from the usual AWS variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY or AWS_PROFILE, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION), which LanceDB reads;
an endpoint over plain http (a local S3 such as moto or MinIO) is allowed here.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

TABLE_NAME = "videos"
VECTOR_COLUMN = "vector"
ITEM_COLUMNS = ["id", "kind", "caption", "source"]  # what a search hit or a listing shows (and `score`)
MODEL_KEY = "vljepa.model"  # schema metadata: the model_fingerprint of the predictions held
PROMPT_KEY = "vljepa.caption_prompt"  # schema metadata: the query the videos were predicted under
# LanceDB's cosine distance is 1 - cosine similarity; scores are similarities, as every endpoint's
DISTANCE = "cosine"


# LanceDB and Lance warn at every fork of a process that has used them. The forks here are Ray's and
# subprocess's, which exec a new program at once: nothing of the forked runtime is used.
warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
warnings.filterwarnings("ignore", message="lance is not fork-safe")


class IndexNotFound(ValueError):
    """No index table at a URI: a typo, or `vljepa index-build` not run yet."""


def model_fingerprint(model_dir: str | Path) -> str:
    """What an item's Ŝ_Y depends on, as one digest: the x-encoder's identity (frozen, so its id and
    config hash name it) and the trained weights after it, the predictor's and the heads' files.
    A retrained model of the same shape gets another digest, so its index is not mixed up with a
    new model's. Reads the predictor's weights (~2 GB for the paper preset, ~2 s)."""
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "vljepa.json").read_text())
    digest = hashlib.sha256(json.dumps([manifest.get("x_encoder_identity"), manifest["config"]],
                                       sort_keys=True).encode())
    for path in [model_dir / "heads.safetensors", *sorted((model_dir / "predictor").glob("*.safetensors"))]:
        with path.open("rb") as weights:
            while chunk := weights.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def table_schema(width: int, fingerprint: str, caption_prompt: str = "") -> pa.Schema:
    return pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("source", pa.string()),
        pa.field(VECTOR_COLUMN, pa.list_(pa.float16(), width)),
    ], metadata={MODEL_KEY: fingerprint, PROMPT_KEY: caption_prompt})


def rows_table(schema: pa.Schema, ids: list[str], kinds: list[str], captions: list[str | None],
               sources: list[str | None], vectors: np.ndarray) -> pa.Table:
    """Rows of the index table; vectors (N, width), any float dtype."""
    width = schema.field(VECTOR_COLUMN).type.list_size
    vectors = np.asarray(vectors, dtype=np.float16).reshape(len(ids), width)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), type=pa.float16()), width)
    return pa.Table.from_arrays([pa.array(ids, pa.string()), pa.array(kinds, pa.string()),
                                 pa.array(captions, pa.string()), pa.array(sources, pa.string()), column],
                                schema=schema)


# -- where the table is ------------------------------------------------------------------------

def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def absolute_uri(uri: str) -> str:
    """A local directory as an absolute path: Serve replicas and Ray workers resolve a relative one
    in their own working directories."""
    return uri if "://" in uri else os.path.abspath(uri)


def table_uri(uri: str) -> str:
    """Where LanceDB keeps the table of the database at `uri` (what Ray Data writes to)."""
    return f"{uri.rstrip('/')}/{TABLE_NAME}.lance"


def storage_options(uri: str) -> dict[str, str] | None:
    """LanceDB reads S3's credentials, region and endpoint from the AWS variables; it refuses an
    endpoint over plain http unless told, which is what a local S3 (moto, MinIO) is."""
    if is_s3(uri) and os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        return {"allow_http": "true"}
    return None


S3_CREDENTIALS_HINT = ("S3 needs credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or "
                       "a role of the node); and AWS_ENDPOINT_URL for an endpoint other than AWS")


def check_credentials(uri: str) -> None:
    """A clear error for S3 without credentials, found the way boto finds them (variables, profiles,
    a node's role). Without it LanceDB answers with a nested retry error from deep in its client."""
    if not is_s3(uri):
        return
    import botocore.session

    if botocore.session.get_session().get_credentials() is None:
        raise ValueError(f"index {uri}: {S3_CREDENTIALS_HINT}")


def check_location(uri: str) -> None:
    """A clear error for a local index at or under a file (LanceDB would fail creating a directory
    there), and for S3 without credentials."""
    check_credentials(uri)
    if "://" in uri:
        return
    path = Path(uri)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"index {uri}: {existing} is a file; give a directory (a LanceDB database)")


def connect(uri: str):
    """The LanceDB database at `uri` (sync API: index-build, tests, benchmarks)."""
    import lancedb

    check_location(uri)
    return lancedb.connect(uri, storage_options=storage_options(uri))


def table_names(db) -> list[str]:
    return list(db.list_tables().tables)


def missing_index(uri: str) -> IndexNotFound:
    return IndexNotFound(f"no retrieval index at {uri} (no LanceDB table {TABLE_NAME!r} there): build one with "
                         f"`vljepa index-build --model MODEL --cache CACHE --index {uri}`")


def check_model(schema: pa.Schema, fingerprint: str | None, uri: str) -> None:
    """ValueError for an index of another model's predictions, naming both fingerprints."""
    held = (schema.metadata or {}).get(MODEL_KEY.encode(), b"").decode() or None
    if held is None:
        raise ValueError(f"index {uri}: table {TABLE_NAME!r} names no model ({MODEL_KEY} missing from its schema "
                         "metadata): not an index vljepa index-build wrote")
    if fingerprint is not None and held != fingerprint:
        raise ValueError(f"index {uri} holds predictions of model {held}, this model is {fingerprint}: "
                         "build an index with this model (`vljepa index-build --index NEW_URI`), or serve the model "
                         "the index was built with")


def open_table(uri: str, fingerprint: str | None = None):
    """The index table at `uri`, sync API. IndexNotFound when there is none; ValueError when it holds
    another model's predictions (fingerprint None: not checked)."""
    db = connect(uri)
    if TABLE_NAME not in table_names(db):
        raise missing_index(uri)
    table = db.open_table(TABLE_NAME)
    check_model(table.schema, fingerprint, uri)
    return table


async def open_table_async(uri: str, fingerprint: str | None, refresh_s: float):
    """The index table at `uri` for a Serve replica (LanceDB's async API: searches, writes and
    compactions run beside each other on the replica's event loop). refresh_s: how stale a read
    may be, as LanceDB's read_consistency_interval; 0 checks for other writers' commits at every
    read (another replica's add is found by the next search)."""
    import lancedb

    check_location(uri)
    db = await lancedb.connect_async(uri, storage_options=storage_options(uri),
                                     read_consistency_interval=timedelta(seconds=refresh_s))
    if TABLE_NAME not in (await db.list_tables()).tables:
        raise missing_index(uri)
    table = await db.open_table(TABLE_NAME)
    check_model(await table.schema(), fingerprint, uri)
    return table


def schema_width(schema: pa.Schema) -> int:
    return schema.field(VECTOR_COLUMN).type.list_size


def caption_prompt(schema: pa.Schema) -> str:
    return (schema.metadata or {}).get(PROMPT_KEY.encode(), b"").decode()


# -- filters -----------------------------------------------------------------------------------

def sql_string(value: str) -> str:
    """A SQL string literal (LanceDB filters are DataFusion SQL)."""
    return "'" + value.replace("'", "''") + "'"


def prefix_filter(prefix: str | None) -> str | None:
    """Items whose id starts with `prefix` (one cache's videos: `<cache name>/`). starts_with, not
    LIKE: a prefix holding % or _ means those characters."""
    return f"starts_with(id, {sql_string(prefix)})" if prefix else None


def ids_filter(ids: list[str]) -> str:
    return f"id IN ({', '.join(sql_string(i) for i in ids)})"


# -- searching ---------------------------------------------------------------------------------

def over_fetch(k: int) -> int:
    """Rows asked of LanceDB for a top-k: one more than k, which tells whether rows past the k-th
    tie with it (then more are asked for: `search`); LanceDB orders equal distances as it meets
    them, so the rows fetched are ranked again, by id among equals."""
    return k + 1


def ranked_hits(found: pa.Table, k: int) -> list[dict]:
    """LanceDB's rows (with `_distance`) -> the k best as {id, kind, caption, source, score}, equal
    scores in id order."""
    rows = found.select([*ITEM_COLUMNS, "_distance"]).to_pylist()
    rows.sort(key=lambda row: (row["_distance"], row["id"]))
    return [{**item(row), "score": 1.0 - row["_distance"]} for row in rows[:k]]


def tie_unresolved(found: pa.Table, k: int, asked: int) -> bool:
    """Whether rows past the `asked` fetched may tie with the k-th best: all `asked` came back and
    the last one's distance equals the k-th's."""
    if found.num_rows < asked or found.num_rows <= k:
        return False
    distances = sorted(found["_distance"].to_pylist())
    return distances[-1] == distances[k - 1]


async def search(build_query: Callable[[int], Awaitable[pa.Table]], k: int) -> list[dict]:
    """The k nearest items, equal scores by id. build_query(n) runs the search for n rows (with the
    request's filter, nprobes, ...): asked for more until no unseen row can tie with the k-th."""
    asked = over_fetch(k)
    found = await build_query(asked)
    while tie_unresolved(found, k, asked):
        asked *= 4
        found = await build_query(asked)
    return ranked_hits(found, k)


def vector_query(query, k: int, prefix: str | None = None, probe: int | None = None, refine: int | None = None):
    """A LanceDB vector query (sync builder or async query: they share these methods) with the
    index's distance, the request's filter and nprobes, and the server's refine factor. `refine`
    re-scores refine x k candidates with their stored vectors: IVF_PQ's compressed distances
    alone rank the near neighbours roughly. Both are ignored by an exact search (no ANN index)."""
    query = query.distance_type(DISTANCE).select([*ITEM_COLUMNS, "_distance"]).limit(k)
    where = prefix_filter(prefix)
    if where:
        query = query.where(where)
    if probe is not None:
        query = query.nprobes(probe)
    if refine:
        query = query.refine_factor(refine)
    return query


def item(row: dict) -> dict:
    """A row as an endpoint shows it: its columns but the vector."""
    return {column: row[column] for column in ITEM_COLUMNS}


# -- the ANN index -----------------------------------------------------------------------------

def vector_index_name(indices) -> str | None:
    """The name of the table's ANN index on its vectors (LanceDB's IndexConfig list), or None."""
    for index in indices:
        if list(index.columns) == [VECTOR_COLUMN]:
            return index.name
    return None


# LanceDB's ANN index types `vljepa index-build --ann-index` offers. IVF_RQ (RaBitQ, 5 bits a
# dimension) is the default: on 200k clustered 1536-d vectors (benchmarks/retrieval.py, 2 cores) it
# found 100% of the exact top 10 at 8.5-9.7 ms a search with refine 5-10 and built in 36 s, where
# IVF_PQ (96 sub-vectors) found 12% without refine and 72% with refine 10 (17 ms), 100% only from
# refine 30 (20 ms), and built in 153 s; IVF_HNSW_SQ matched IVF_RQ's recall and speed but built in
# 260 s (docs/benchmarks.md, "Retrieval on LanceDB").
ANN_INDEXES = ("ivf_rq", "ivf_pq", "ivf_hnsw_sq")


def ann_config(kind: str, num_partitions: int | None = None, num_sub_vectors: int | None = None):
    """The LanceDB index config of an ANN index type, cosine distance; None: LanceDB's defaults.
    num_sub_vectors is IVF_PQ's alone."""
    from lancedb.index import HnswSq, IvfPq, IvfRq

    if kind not in ANN_INDEXES:
        raise ValueError(f"ANN index {kind!r}: one of {', '.join(ANN_INDEXES)}")
    if num_sub_vectors is not None and kind != "ivf_pq":
        raise ValueError(f"sub-vectors are IVF_PQ's: the {kind} index takes none")
    if kind == "ivf_pq":
        return IvfPq(distance_type=DISTANCE, num_partitions=num_partitions, num_sub_vectors=num_sub_vectors)
    if kind == "ivf_rq":
        return IvfRq(distance_type=DISTANCE, num_partitions=num_partitions)
    return HnswSq(distance_type=DISTANCE, num_partitions=num_partitions)


def ann_stats(dataset, name: str) -> dict:
    """{type, partitions, code_bytes} of an ANN index, from a Lance dataset (LanceTable.to_lance()):
    LanceDB's own statistics do not name the partitions, which a request's `probe` must not
    exceed; code_bytes is what the index keeps per vector. After a compaction an index may be in
    segments (the rows added since in a segment of their own), and LanceDB may have merged small
    partitions: the largest segment's count is what a search can probe."""
    # without it, Lance puts every partition's centroid into the statistics (megabytes at scale)
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    stats = dataset.stats.index_stats(name)
    segments = stats.get("segments") or stats.get("indices") or [{}]
    return {"type": stats["index_type"], "partitions": max(int(s.get("num_partitions", 0)) for s in segments),
            "code_bytes": code_bytes(segments[0].get("sub_index") or {})}


def code_bytes(sub_index: dict) -> int:
    """Bytes an ANN index keeps per vector, from its quantizer's statistics (PQ: a byte per
    sub-vector at 8 bits; RaBitQ: bits per dimension; SQ: a byte per dimension)."""
    kind = sub_index.get("index_type")
    if kind == "PQ":
        return sub_index["num_sub_vectors"] * sub_index.get("nbits", 8) // 8
    if kind == "RQ":
        return -(-sub_index["code_dim"] * sub_index.get("num_bits", 1) // 8)
    return int(sub_index.get("dim", sub_index.get("dimension", 0)))
