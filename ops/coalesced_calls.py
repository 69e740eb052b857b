"""Calls that arrive while one is running wait, and go together into the next: batching that forms
only under load and never waits for a batch to fill.

What the retrieval index uses to answer concurrent searches in one pass over its matrix
(pipelines/serve_index.py). Not `@serve.batch`: that one runs only inside a Serve replica (it
reads the replica's context when its queue is made), and the index's shard class is also driven
in-process (tests/unit/test_index_shards.py); and a search needs no wait, since a lone one should
start at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class CoalescedCalls(Generic[Item, Result]):
    def __init__(self, run_batch: Callable[[list[Item]], list[Result]], max_batch: int = 32, fill_to: int = 1,
                 linger_fraction: float = 0.5, max_linger_s: float = 0.1):
        """run_batch: items -> one result each, in order; run in a worker thread, so the event
        loop keeps taking calls while it runs. max_batch: the most items it is given at once.

        fill_to, linger_fraction, max_linger_s: when the callers seen around the last batch (its
        items and those that queued while it ran) are at least fill_to, the next batch waits for
        them to come back, for up to linger_fraction of the last batch's run time (at most
        max_linger_s) from its end. Without it, concurrent callers split into cohorts that never
        meet: 8 callers answered 1 and 7 at a time stay two cohorts, each resubmitting while the
        other's batch runs, and a batch of 7 gains less than one of 8, a batch of 4 nothing
        (benchmarks/index_shards.py). A lone caller, a few callers (fewer than fill_to: no gain in
        waiting for them), or a call long after the last batch never waits."""
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.fill_to = fill_to
        self.linger_fraction = linger_fraction
        self.max_linger_s = max_linger_s
        self.pending: list[tuple[Item, asyncio.Future]] = []
        self.draining = False
        self.last_batch: tuple[int, float, float] | None = None  # (callers seen, run seconds, end time)
        self.batch_sizes: list[int] = []  # of the batches run so far, the last 1000 (for tests and benchmarks)

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((item, future))
        if not self.draining:
            self.draining = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                await self._linger()
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
                self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
                started = time.perf_counter()
                await self._answer(batch)
                ended = time.perf_counter()
                self.last_batch = (len(batch) + len(self.pending), ended - started, ended)
        finally:
            self.draining = False

    async def _linger(self) -> None:
        if self.last_batch is None:
            return
        callers, seconds, ended = self.last_batch
        expected = min(callers, self.max_batch)
        if expected < self.fill_to:
            return
        deadline = ended + min(self.max_linger_s, self.linger_fraction * seconds)
        while len(self.pending) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)

    async def _answer(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await asyncio.to_thread(self.run_batch, [item for item, _ in batch])
            # checked here, not by zip(strict=True) below: raised there it would end the drain
            # with this batch's callers waiting forever
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch gave {len(results)} results for {len(batch)} items")
        except Exception as error:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(error)
                return
            # one bad item must not fail the others it happened to be batched with: each alone
            for one in batch:
                await self._answer([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a caller that gave up (cancelled) leaves its future done
                future.set_result(result)
