"""The feature cache: one Parquet file per input shard, a report per shard, markers, a manifest.

    CACHE/manifest.json              fingerprint (+ its fields), per-shard counts
    CACHE/<shard>.parquet            one row per cached sample: key, texts, frame times, S_V
    CACHE/<shard>.report.parquet     one row per input sample, failed ones included: key, status, error
    CACHE/<shard>.done.json          commit marker: written last, holds the fingerprint and the
                                     shard's counts (rows, rows per media kind / task, bad samples)

A shard is complete only when its marker exists with the run's fingerprint. Data files are
written atomically (temporary file + rename on a filesystem; a single PUT on S3, where an object
appears whole or not at all) and the marker after them, so a killed run never leaves a partial
file that passes for a complete one.

S_V is stored as a flat list of float16 plus its (N, D) shape: Parquet-native, readable with
plain pyarrow, and variable N per row (images and clips can share a shard).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from dataclasses import asdict, dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


FORMAT = "vljepa-feature-cache/1"
PREPROCESSING = "uniform-centre-segments/resize-short-side/centre-crop/imagenet-norm"

ARROW_STORAGE = {"float16": pa.float16(), "float32": pa.float32()}

# Reading a cache that does not exist (yet): a missing path, or one under a file (which a
# write will refuse, in FeatureCache.check_writable)
NOTHING_THERE = (FileNotFoundError, NotADirectoryError)

REPORT_SCHEMA = pa.schema([("key", pa.string()), ("status", pa.string()),
                           ("reason", pa.string()), ("error_message", pa.string())])


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """Everything that determines the cached features."""

    x_encoder: str  # checkpoint id or directory name
    x_encoder_config_hash: str  # hash of the encoder's architecture config
    num_frames: int  # frames per video clip (images: 1)
    image_size: int
    storage_dtype: str
    pooling: str = "none"  # all visual tokens are kept
    preprocessing: str = PREPROCESSING

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def cache_schema(storage_dtype: str) -> pa.Schema:
    return pa.schema([
        ("key", pa.string()), ("shard", pa.string()), ("source", pa.string()), ("task", pa.string()),
        ("media_kind", pa.string()), ("query", pa.string()), ("target", pa.string()),
        ("candidates", pa.list_(pa.string())), ("frame_times", pa.list_(pa.float32())),
        ("s_v_shape", pa.list_(pa.int32())), ("s_v", pa.list_(ARROW_STORAGE[storage_dtype])),
    ])


def cache_url(url: str | None) -> str | None:
    """A cache as a driver hands it to other processes: a local path made absolute (Ray Data's
    read tasks, a training worker, a Serve replica resolve a relative one in their own working
    directory, which is not the driver's); a URL as given."""
    return FeatureCache(url).url if url else url


class FeatureCache:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.is_local = "file" in self.fs.protocol or "local" in self.fs.protocol
        if self.is_local:
            self.url = self.root  # absolute: commit tasks resolve it in their own working directory

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    # -- state -----------------------------------------------------------------------------
    def manifest(self) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self.path("manifest.json")))
        except NOTHING_THERE:
            return None

    def marker(self, shard: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self.path(f"{shard}.done.json")))
        except NOTHING_THERE:
            return None

    def markers(self, shards: list[str], known: dict[str, dict] | None = None) -> dict[str, dict | None]:
        """Every shard's marker (None: not committed), with as few requests as possible.

        One listing says which markers exist (1000 names per request on S3). A marker's content
        is taken from `known` (what this run's commits returned), else from the manifest (written
        after every run; a complete shard's marker never changes), and only the rest are read, in
        one batched call (concurrent on s3fs): those a killed run committed. Reading each marker
        in turn costs a request per shard, in sequence: minutes before a re-run of a large cache
        on an object store can start (docs/benchmarks.md)."""
        self.fs.invalidate_cache(self.root)  # commits ran in other processes: no cached listing
        try:
            listed = {path.rsplit("/", 1)[-1] for path in self.fs.ls(self.root, detail=False)}
        except NOTHING_THERE:
            return {shard: None for shard in shards}
        known = {**(self.manifest() or {}).get("shards", {}), **(known or {})}
        result: dict[str, dict | None] = {}
        unread: dict[str, str] = {}  # marker file name -> shard
        for shard in shards:
            name = f"{shard}.done.json"
            result[shard] = known.get(shard) if name in listed else None
            if name in listed and shard not in known:
                unread[name] = shard
        if unread:
            found = self.fs.cat([self.path(name) for name in unread], on_error="omit")
            for path, data in found.items():
                result[unread[path.rsplit("/", 1)[-1]]] = json.loads(data)
        return result

    def status(self, shards: list[str], fingerprint: str) -> dict[str, str]:
        """shard -> "done" (complete, same fingerprint), "stale" (complete, other) or "pending"."""
        result = {}
        for shard, marker in self.markers(shards).items():
            if marker is None:
                result[shard] = "pending"
            else:
                result[shard] = "done" if marker.get("fingerprint") == fingerprint else "stale"
        return result

    def foreign_fingerprint(self, fingerprint: str) -> str | None:
        """The fingerprint of an existing cache built with different settings, if any."""
        manifest = self.manifest()
        if manifest and manifest.get("fingerprint") != fingerprint:
            return manifest.get("fingerprint")
        return None

    def clear(self) -> None:
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)

    # -- writing ---------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> None:
        """Atomic: readers see the old content or the new, never a part."""
        target = self.path(name)
        if self.is_local:
            self.fs.makedirs(self.root, exist_ok=True)
            staging = f"{target}.tmp-{uuid.uuid4().hex}"
            with open(staging, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, target)
        else:
            self.fs.pipe_file(target, data)  # one PUT: the object appears whole or not at all

    def check_writable(self) -> None:
        """Write and remove a probe file, so an unwritable --out (a read-only mount, a path under
        a file, a bucket without write access) is one line before any shard is decoded, not a
        commit task's traceback after the first shard's features were computed and lost."""
        probe = f".write-probe-{uuid.uuid4().hex}"
        try:
            self.write_bytes(probe, b"")
        except OSError as exc:
            raise PermissionError(f"cannot write the feature cache at {self.url}: {exc}") from exc
        with contextlib.suppress(OSError):  # a bucket may grant writes and not deletes: a run needs only writes
            self.fs.rm_file(self.path(probe))

    def commit_shard(self, shard: str, rows: list[dict], report: list[dict], fingerprint: str,
                     storage_dtype: str) -> dict:
        """Write a shard's features and report, then its marker. Returns its counts."""
        table = rows_to_table(rows, storage_dtype)
        data = _parquet_bytes(table, bulk_columns=("s_v",))
        self.write_bytes(f"{shard}.parquet", data)
        self.write_bytes(f"{shard}.report.parquet", _parquet_bytes(pa.Table.from_pylist(report, schema=REPORT_SCHEMA)))
        bad: dict[str, int] = {}
        for row in report:
            if row["status"] != "ok":
                bad[row["reason"]] = bad.get(row["reason"], 0) + 1
        kinds: dict[str, int] = {}  # "media_kind/task" -> rows: what a training stage can check before it starts
        for row in rows:
            kind = f"{row['media_kind']}/{row['task']}"
            kinds[kind] = kinds.get(kind, 0) + 1
        counts = {"rows": table.num_rows, "bad": bad, "bytes": len(data), "fingerprint": fingerprint, "kinds": kinds}
        self.write_bytes(f"{shard}.done.json", json.dumps(counts, sort_keys=True).encode())
        return counts

    def write_manifest(self, fingerprint: Fingerprint, shards: dict[str, dict]) -> None:
        manifest = {"format": FORMAT, "fingerprint": fingerprint.digest(),
                    "fingerprint_fields": asdict(fingerprint), "shards": shards}
        self.write_bytes("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())

    # -- reading ---------------------------------------------------------------------------
    def shard_names(self) -> list[str]:
        manifest = self.manifest() or {"shards": {}}
        return sorted(manifest["shards"])

    def shard_files(self) -> list[str]:
        return [self.path(f"{shard}.parquet") for shard in self.shard_names()]

    def read_shard(self, shard: str) -> pa.Table:
        with self.fs.open(self.path(f"{shard}.parquet"), "rb") as handle:
            return pq.read_table(handle)


def s_v_row(s_v: np.ndarray) -> tuple[list[int], np.ndarray]:
    """(N, D) array -> the (shape, flat values) pair stored in a row."""
    return list(s_v.shape), s_v.reshape(-1)


def s_v_from_row(shape: list[int], flat) -> np.ndarray:
    return np.asarray(flat).reshape(shape)


# int32 list offsets: a chunk of the S_V column holds fewer values than this (a paper-size 8-frame
# sample has 2^20, so a shard of thousands of them spans several chunks).
MAX_VALUES_PER_CHUNK = 2**31 - 1


def _list_chunk(part: list[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(part) + 1, dtype=np.int32)
    np.cumsum([len(flat) for flat in part], out=offsets[1:])
    values = np.concatenate(part) if part else np.zeros(0, dtype=value_type.to_pandas_dtype())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def _s_v_column(flats: list[np.ndarray], value_type: pa.DataType) -> pa.ChunkedArray:
    chunks, part, total = [], [], 0
    for flat in flats:
        if part and total + len(flat) > MAX_VALUES_PER_CHUNK:
            chunks.append(_list_chunk(part, value_type))
            part, total = [], 0
        part.append(flat)
        total += len(flat)
    chunks.append(_list_chunk(part, value_type))
    return pa.chunked_array(chunks)


def rows_to_table(rows: list[dict], storage_dtype: str) -> pa.Table:
    """Cache rows -> the cache table. S_V goes in as whole numpy buffers: converting it row by row
    through Python (pa.Table.from_pylist) costs ~30 ms per paper-size sample, this ~0.1 ms."""
    schema = cache_schema(storage_dtype)
    columns = []
    for field in schema:
        if field.name == "s_v":
            columns.append(_s_v_column([np.asarray(r["s_v"]).reshape(-1) for r in rows], field.type.value_type))
        else:
            columns.append(pa.array([r[field.name] for r in rows], type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _parquet_bytes(table: pa.Table, bulk_columns: tuple[str, ...] = ()) -> bytes:
    """zstd Parquet. Bulk float columns (S_V) skip what only costs there: a dictionary (never
    smaller for features) and min/max statistics (nobody filters on them), and are stored byte-
    stream-split (zstd then finds the exponent bytes). Measured on 32 paper-size rows of random
    features: encoding 0.43 s instead of 1.3 s with the defaults, and 10% smaller (docs/benchmarks.md)."""
    plain = [name for name in table.column_names if name not in bulk_columns]
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", use_dictionary=plain, write_statistics=plain,
                   column_encoding={f"{name}.list.element": "BYTE_STREAM_SPLIT" for name in bulk_columns} or None)
    return buffer.getvalue()
