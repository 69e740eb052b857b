"""Select a training stage's rows from cached Arrow batches, zero-copy (no pandas, no per-row Python)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def selection_mask(table: pa.Table, media_kinds: list[str], tasks: list[str]) -> pa.ChunkedArray:
    """Whether each row's media kind and task are among those the stage trains on."""
    return pc.and_(pc.is_in(table["media_kind"], value_set=pa.array(media_kinds)),
                   pc.is_in(table["task"], value_set=pa.array(tasks)))


def select_rows(table: pa.Table, media_kinds: list[str], tasks: list[str], replay: bool) -> pa.Table:
    """Rows whose media kind and task the stage trains on, tagged with whether they are replayed."""
    selected = table.filter(selection_mask(table, media_kinds, tasks))
    return selected.append_column("replay", pa.array([replay] * selected.num_rows, type=pa.bool_()))
