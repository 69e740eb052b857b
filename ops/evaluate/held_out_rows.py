"""The rows the in-training evaluation scores every `--eval-every` steps, read again each time a row
group at a time rather than held between evaluations.

Held, they were the rows' S_V for the whole run on rank 0: the default 2000 rows are ~4 GiB of
float16 at the paper's 2 MiB per clip. Read again, an evaluation holds one row group of S_V (at
most 16 MiB, ops/cache/parquet.py) and its predictions, ~E floats a row. A cache in an object
store is read from there once, at the start, into local files of those row groups (a spool
beside the worker), so an evaluation re-reads local disk, not the bucket. A spool records its host
and process; a process killed outright (a worker SIGKILLed, OOM) cannot remove its own, so the
next one to make a spool on that host removes the spools of processes that are gone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from ops.cache.feature_cache import FeatureCache
from ops.cache.parquet import group_tables, table_rows
from ops.evaluate.zero_shot import row_chunks, table_chunks

SPOOL_PREFIX = "vljepa-eval-"
SPOOL_OWNER = "owner.json"  # {"host", "pid"}: whose spool this is


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphaned_spools(parent: str | Path) -> list[Path]:
    """Removes the spools under `parent` whose process, on this host, is gone; -> them. (A spool of
    another host, on a shared directory, is that host's to judge; one without its owner file yet is
    being made.)"""
    removed = []
    for path in Path(parent).glob(f"{SPOOL_PREFIX}*"):
        try:
            owner = json.loads((path / SPOOL_OWNER).read_text())
            host, pid = owner["host"], int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if host == socket.gethostname() and not _process_exists(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class HeldOutRows:
    def __init__(self, cache_url: str, max_samples: int | None = None, spool_parent: str | None = None):
        """Reads the cache now, to fail here (an empty cache, no manifest) rather than at the first
        evaluation: a local cache's first row group; a remote cache's first `max_samples` rows, into
        the spool, a directory under `spool_parent` (the system's temporary directory by default)
        removed by close(), with this object or at exit (one a process killed outright leaves is
        removed by the next spool made on this host)."""
        self.cache_url, self.max_samples = cache_url, max_samples
        self.spool: Path | None = None
        self._remove_spool = None
        if FeatureCache(cache_url).is_local:
            next(table_chunks(cache_url, max_samples))  # its first row group; an empty cache raises
            return
        parent = spool_parent or tempfile.gettempdir()
        remove_orphaned_spools(parent)
        self.spool = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=parent))
        (self.spool / SPOOL_OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        self._remove_spool = weakref.finalize(self, shutil.rmtree, str(self.spool), True)
        for number, table in enumerate(table_chunks(cache_url, max_samples)):
            pq.write_table(table, self.spool / f"{number:06d}.parquet", compression="none")

    def chunks(self) -> Iterator[list[dict]]:
        """The rows, a row group at a time, S_V as numpy views of it (as ops.evaluate.zero_shot.row_chunks)."""
        if self.spool is None:
            yield from row_chunks(self.cache_url, self.max_samples)
            return
        for path in sorted(self.spool.glob("*.parquet")):
            with open(path, "rb") as handle:
                for table in group_tables(handle):
                    yield table_rows(table)

    def close(self) -> None:
        """Removes the spool now (it is removed with this object, or at exit, otherwise)."""
        if self._remove_spool is not None:
            self._remove_spool()
