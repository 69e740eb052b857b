"""The feature cache: one Parquet file per input shard, a report per shard, markers, a manifest.

    CACHE/manifest.json              fingerprint (+ its fields), per-shard counts
    CACHE/<shard>.parquet            one row per cached sample: key, texts, frame times, S_V
    CACHE/<shard>.report.parquet     one row per input sample, failed ones included: key, status, error
    CACHE/<shard>.done.json          commit marker: written last, holds the fingerprint and the
                                     shard's counts (rows, rows per media kind / task, bad samples)

A shard is complete only when its marker exists with the run's fingerprint. Data files are
written atomically (temporary file + rename on a filesystem; on S3 an upload completed at close,
a single PUT or a multipart upload, where an object appears whole or not at all) and the marker
after them, so a killed run never leaves a partial file that passes for a complete one. A shard's
features are streamed out a row group at a time (ops/cache/parquet.py).

S_V is stored as a flat list of float16 plus its (N, D) shape: Parquet-native, readable with
plain pyarrow, and variable N per row (images and clips can share a shard).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass

import fsspec
import numpy as np
import pyarrow as pa

from ops.cache.parquet import parquet_bytes, write_row_groups

FORMAT = "vljepa-feature-cache/1"
PREPROCESSING = "uniform-centre-segments/resize-short-side/centre-crop/imagenet-norm"

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
        if self.is_local:
            with self.open_atomic(name) as handle:
                handle.write(data)
        else:
            self.fs.pipe_file(self.path(name), data)  # one PUT: the object appears whole or not at all

    @contextlib.contextmanager
    def open_atomic(self, name: str):
        """A binary file to write `name` through, as a stream: it appears whole when the block
        ends, or not at all when the block raises. On a filesystem: a temporary file, fsynced,
        then renamed. On an object store: the upload (multipart past one block) is completed at
        close, so the object appears at once; on an error it is aborted instead."""
        target = self.path(name)
        if self.is_local:
            self.fs.makedirs(self.root, exist_ok=True)
            staging = f"{target}.tmp-{uuid.uuid4().hex}"
            try:
                with open(staging, "wb") as handle:
                    yield handle
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(staging, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(staging)
                raise
            return
        handle = self.fs.open(target, "wb")
        try:
            yield handle
        except BaseException:
            handle.discard()  # s3fs: abort the multipart upload; a single PUT was never sent
            with contextlib.suppress(AttributeError):  # fsspec's buffered files let it be set
                handle.closed = True  # else the file's __del__ would close it, sending what it buffered
            raise
        handle.close()

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
        """Write a shard's features (streamed, a row group at a time: ops/cache/parquet.py) and
        report, then its marker. Returns its counts."""
        with self.open_atomic(f"{shard}.parquet") as handle:
            write_row_groups(handle, rows, storage_dtype)
            size = handle.tell()
        self.write_bytes(f"{shard}.report.parquet", parquet_bytes(pa.Table.from_pylist(report, schema=REPORT_SCHEMA)))
        bad: dict[str, int] = {}
        for row in report:
            if row["status"] != "ok":
                bad[row["reason"]] = bad.get(row["reason"], 0) + 1
        kinds: dict[str, int] = {}  # "media_kind/task" -> rows: what a training stage can check before it starts
        for row in rows:
            kind = f"{row['media_kind']}/{row['task']}"
            kinds[kind] = kinds.get(kind, 0) + 1
        counts = {"rows": len(rows), "bad": bad, "bytes": size, "fingerprint": fingerprint, "kinds": kinds}
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


def s_v_row(s_v: np.ndarray) -> tuple[list[int], np.ndarray]:
    """(N, D) array -> the (shape, flat values) pair stored in a row."""
    return list(s_v.shape), s_v.reshape(-1)


def s_v_from_row(shape: list[int], flat) -> np.ndarray:
    return np.asarray(flat).reshape(shape)
