"""Predicting a feature cache's rows for the retrieval index: a row group read at a time, a few
bounded calls to the visual replicas out at once.

An ingress filling its index from `--index-cache` reads the S_V of the videos the index lacks and
has the visual deployment predict their Ŝ_Y. Reading a shard's rows at once held its S_V whole in
the ingress (2 GiB for a thousand paper-size clips), and a call per row left a GPU replica at
batch 1. Here rows go `rows_per_call` to a call, with at most `max_in_flight` calls out: the
ingress holds a few calls' S_V and the row group being read, and keeps of each row only what the
index gets (its id, Ŝ_Y and metadata).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

import numpy as np

from ops.collate import row_features

# Cached S_V per call: one batch of the visual replica's model (`max_batch_size`, 16 by default),
# 32 MiB for paper-size clips. Calls out at once: enough to keep the replicas fed while the next
# row groups are read.
ROWS_PER_CALL = 16
MAX_IN_FLIGHT = 4


async def predict_in_calls(row_groups: Iterable[list[dict]], identify: Callable[[dict], tuple[str, dict]],
                           predict: Callable[[list[np.ndarray]], Awaitable[list[np.ndarray]]],
                           rows_per_call: int = ROWS_PER_CALL,
                           max_in_flight: int = MAX_IN_FLIGHT) -> list[tuple[str, np.ndarray, dict]]:
    """Cached rows (dicts with `s_v_shape`, `s_v`), a row group at a time -> [(id, Ŝ_Y, meta)] in
    row order. `predict` is started when called (a handle's `.remote`) or when awaited (a coroutine):
    both are started at once here."""
    in_flight: deque = deque()  # ([(id, meta)], the call predicting those rows), oldest first
    predicted: list[tuple[str, np.ndarray, dict]] = []

    def send(rows: list[dict]) -> None:
        arrays = row_features([row["s_v_shape"] for row in rows], [row["s_v"] for row in rows])
        in_flight.append(([identify(row) for row in rows], asyncio.ensure_future(predict(arrays))))

    async def settle_oldest() -> None:
        items, call = in_flight.popleft()
        predicted.extend((item_id, embedding, meta) for (item_id, meta), embedding in zip(items, await call))

    pending: list[dict] = []
    for group in row_groups:
        pending += group
        while len(pending) >= rows_per_call:
            send(pending[:rows_per_call])
            pending = pending[rows_per_call:]
            if len(in_flight) >= max_in_flight:
                await settle_oldest()
    if pending:
        send(pending)
    while in_flight:
        await settle_oldest()
    return predicted
