"""The feature cache's Parquet files: written as a stream of bounded row groups, read back a row
group at a time with S_V as numpy.

A paper-size sample's S_V is 2 MiB (1024 tokens x 1024 float16), so a shard of a thousand clips
holds 2 GiB of features. Written as one row group from one in-memory file, committing a shard
peaked at ~8.5x its features in the commit task, and a training read held the whole row group
decoded, ~7x (docs/benchmarks.md, "Feature cache: memory of a paper-size shard").
Here a file's row groups hold at most ROW_GROUP_BYTES of S_V each, encoded and written one after
another to the open file, so both ends hold one group at a time, whatever the shard's size.
A small-feature cache (the tiny presets) still fits one group per shard, as before; files with one
group (caches written before this) read the same way.

Rows come back with S_V as a numpy view of the row group's buffers (no copy): `to_pylist()` made
each value a Python float, ~25x the bytes and seconds per paper-size row (evaluation, the index).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ARROW_STORAGE = {"float16": pa.float16(), "float32": pa.float32()}

# int32 list offsets: a chunk of the S_V column holds fewer values than this (a paper-size 8-frame
# sample has 2^20, so a group of thousands of them spans several chunks).
MAX_VALUES_PER_CHUNK = 2**31 - 1

# S_V bytes per row group, at most (a row larger than this is a group of its own): 8 paper-size
# 8-frame clips, 32 images. Writing or reading a group peaks at ~10-14x its S_V (Parquet's list
# levels and pages, Arrow's buffers: measured 4 / 16 / 64 MiB groups -> ~90 / ~230 / ~650 MiB, and
# larger groups were slower too), so this bounds a commit or a reader at ~250 MiB; much smaller
# groups would cost an object store a request per few MiB.
ROW_GROUP_BYTES = 16 * 2**20

BULK_COLUMNS = ("s_v",)


def cache_schema(storage_dtype: str) -> pa.Schema:
    return pa.schema([
        ("key", pa.string()), ("shard", pa.string()), ("source", pa.string()), ("task", pa.string()),
        ("media_kind", pa.string()), ("query", pa.string()), ("target", pa.string()),
        ("candidates", pa.list_(pa.string())), ("frame_times", pa.list_(pa.float32())),
        ("s_v_shape", pa.list_(pa.int32())), ("s_v", pa.list_(ARROW_STORAGE[storage_dtype])),
    ])


# -- writing -------------------------------------------------------------------------------------
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


def writer_options(column_names: list[str], bulk_columns: tuple[str, ...] = ()) -> dict:
    """zstd Parquet. Bulk float columns (S_V) skip what only costs there: a dictionary (never
    smaller for features) and min/max statistics (nobody filters on them), and are stored byte-
    stream-split (zstd then finds the exponent bytes). Measured on 32 paper-size rows of random
    features: encoding 0.43 s instead of 1.3 s with the defaults, and 10% smaller (docs/benchmarks.md)."""
    plain = [name for name in column_names if name not in bulk_columns]
    return {"compression": "zstd", "use_dictionary": plain, "write_statistics": plain,
            "column_encoding": {f"{name}.list.element": "BYTE_STREAM_SPLIT" for name in bulk_columns} or None}


def parquet_bytes(table: pa.Table, bulk_columns: tuple[str, ...] = ()) -> bytes:
    """A small table (a shard's report) as one Parquet file in memory."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **writer_options(table.column_names, bulk_columns))
    return buffer.getvalue()


def row_group_bounds(rows: list[dict], storage_dtype: str, group_bytes: int | None = None) -> list[tuple[int, int]]:
    """[start, stop) of each row group: consecutive rows while their S_V fits `group_bytes` (at
    least one row a group). Decided by the rows alone, so a shard's file is the same every run."""
    limit = ROW_GROUP_BYTES if group_bytes is None else group_bytes
    itemsize = ARROW_STORAGE[storage_dtype].bit_width // 8
    bounds, start, size = [], 0, 0
    for index, row in enumerate(rows):
        row_bytes = np.asarray(row["s_v"]).size * itemsize
        if index > start and size + row_bytes > limit:
            bounds.append((start, index))
            start, size = index, 0
        size += row_bytes
    if rows:
        bounds.append((start, len(rows)))
    return bounds


def write_row_groups(sink, rows: list[dict], storage_dtype: str) -> None:
    """The cache rows as one Parquet file on an open binary `sink`, a row group at a time (each
    group's table built, encoded and written before the next is built). No rows: a file with the
    schema and no groups."""
    schema = cache_schema(storage_dtype)
    with pq.ParquetWriter(sink, schema, **writer_options(schema.names, BULK_COLUMNS)) as writer:
        for start, stop in row_group_bounds(rows, storage_dtype):
            writer.write_table(rows_to_table(rows[start:stop], storage_dtype), row_group_size=stop - start)


# -- reading -------------------------------------------------------------------------------------
def group_tables(handle, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The file's row groups, one table each, read one at a time."""
    parquet = pq.ParquetFile(handle)
    for group in range(parquet.num_row_groups):
        yield parquet.read_row_group(group, columns=columns)


def group_starts(parquet: pq.ParquetFile) -> np.ndarray:
    """The file order index of each row group's first row, then the file's row count."""
    return np.cumsum([0, *(parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups))])


def rows_by_group(handle, indices: list[int], columns: list[str] | None = None) -> Iterator[list[tuple[int, dict]]]:
    """[(index, row)] of the rows numbered `indices` (file order), as table_rows gives them, one list
    per row group holding any of them, in file order; only those groups are read, one at a time."""
    parquet = pq.ParquetFile(handle)
    starts = group_starts(parquet)
    outside = [index for index in indices if not 0 <= index < starts[-1]]
    if outside:
        raise IndexError(f"rows {outside[:5]} asked of a file of {int(starts[-1])}")
    wanted = set(indices)
    for group in sorted(set((np.searchsorted(starts, indices, side="right") - 1).tolist())):
        start = int(starts[group])
        rows = table_rows(parquet.read_row_group(group, columns=columns))
        yield [(start + offset, row) for offset, row in enumerate(rows) if start + offset in wanted]


def rows_at(handle, indices: list[int], columns: list[str] | None = None) -> list[dict]:
    """The rows numbered `indices` (file order) as table_rows gives them, in that order; only the
    row groups holding them are read."""
    found = {index: row for group in rows_by_group(handle, indices, columns) for index, row in group}
    return [found[index] for index in indices]


def s_v_arrays(column: pa.ChunkedArray) -> list[np.ndarray]:
    """A table's S_V column as one flat numpy array per row, each a view of the Arrow buffers."""
    arrays: list[np.ndarray] = []
    for chunk in column.chunks:
        values = chunk.values.to_numpy(zero_copy_only=True)  # the unsliced child; offsets index into it
        offsets = chunk.offsets.to_numpy()
        arrays += [values[offsets[i]:offsets[i + 1]] for i in range(len(chunk))]
    return arrays


def table_rows(table: pa.Table) -> list[dict]:
    """A cache table's rows as dicts: S_V as numpy views (s_v_arrays), every other column as Python."""
    columns = {name: (s_v_arrays(table[name]) if name == "s_v" else table[name].to_pylist())
               for name in table.column_names}
    return [dict(zip(columns, values)) for values in zip(*columns.values())] if columns else []
