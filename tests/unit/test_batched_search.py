"""Concurrent searches of an index shard are answered together, in one pass over its matrix, with
the results each would have had alone; a bad query fails only its own request."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ops.coalesced_calls import CoalescedCalls
from ops.vector_index import GEMM_FROM, VectorIndex
from pipelines.serve_index import RetrievalIndex
from tests.search_results import assert_same_results

WIDTH = 16


def _units(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, WIDTH)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _filled(index, count: int = 300):
    for i, embedding in enumerate(_units(count, seed=1)):
        index.add(f"{'eval' if i % 3 else 'train'}/clip{i}", embedding, {"kind": "video"})
    return index


@pytest.mark.parametrize("count", [1, 3, GEMM_FROM, 40])
@pytest.mark.parametrize("prefix", [None, "eval/", "nothing/"])
def test_search_many_ranks_each_query_as_search_does(count, prefix):
    index = _filled(VectorIndex(WIDTH))
    queries = _units(count, seed=2)
    found = index.search_many(queries, 7, prefix)
    assert len(found) == count
    for query, results in zip(queries, found):
        assert_same_results(results, index.search(query, 7, prefix))
    if prefix == "nothing/":
        assert found == [[] for _ in range(count)]


def test_concurrent_searches_go_together_and_each_keeps_its_own_k_and_prefix():
    shard = _filled(RetrievalIndex.func_or_class(WIDTH))
    asks = [(query, 1 + i % 9, (None, "eval/", "train/")[i % 3]) for i, query in enumerate(_units(60, seed=3))]

    async def together():
        return await asyncio.gather(*(shard.search_queued(*ask) for ask in asks))

    found = asyncio.run(together())
    for ask, results in zip(asks, found):
        assert len(results) == ask[1]
        assert_same_results(results, shard.search(*ask))
    sizes = shard.queued_searches.batch_sizes
    assert sum(sizes) == 60 and max(sizes) > 1 and max(sizes) <= 32, sizes  # batched, and bounded


def test_a_lone_search_runs_at_once_and_a_bad_query_fails_only_itself():
    shard = _filled(RetrievalIndex.func_or_class(WIDTH))
    good = _units(5, seed=4)

    async def mixed():
        lone = await shard.search_queued(good[0], 3)
        calls = [shard.search_queued(query, 3) for query in good[1:]]
        calls.insert(2, shard.search_queued(np.zeros(WIDTH + 1, dtype=np.float32), 3))  # the wrong width
        return lone, await asyncio.gather(*calls, return_exceptions=True)

    lone, answers = asyncio.run(mixed())
    assert_same_results(lone, shard.search(good[0], 3))
    assert shard.queued_searches.batch_sizes[0] == 1
    assert isinstance(answers[2], ValueError) and "width" in str(answers[2])
    for query, results in zip(good[1:], answers[:2] + answers[3:]):
        assert_same_results(results, shard.search(query, 3))


def test_coalesced_calls_answer_every_caller_in_order_under_a_batch_limit():
    seen: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        seen.append(items)
        return [2 * item for item in items]

    calls = CoalescedCalls(double, max_batch=4)

    async def many():
        return await asyncio.gather(*(calls(i) for i in range(10)))

    assert asyncio.run(many()) == [2 * i for i in range(10)]
    assert [item for batch in seen for item in batch] == list(range(10))
    assert max(len(batch) for batch in seen) == 4
    assert asyncio.run(many()) == [2 * i for i in range(10)]  # a new event loop: nothing left of the old one


def test_a_batch_function_that_miscounts_fails_its_callers_instead_of_leaving_them_waiting():
    calls = CoalescedCalls(lambda items: items[:1], max_batch=8)  # one result, whatever the batch

    async def many():
        return await asyncio.wait_for(asyncio.gather(*(calls(i) for i in range(4)), return_exceptions=True), 5)

    results = asyncio.run(many())
    # the first batch (one caller) is answered; the rest, batched, miscount, then alone each succeed
    assert results == [0, 1, 2, 3], results
    broken = CoalescedCalls(lambda items: [], max_batch=8)

    async def failing():
        return await asyncio.wait_for(asyncio.gather(*(broken(i) for i in range(3)), return_exceptions=True), 5)

    errors = asyncio.run(failing())
    assert all(isinstance(error, RuntimeError) and "0 results for 1 items" in str(error) for error in errors), errors


def _cohorts(linger_fraction: float) -> list[int]:
    """Batch sizes for 8 callers making 6 calls each, one starting before the other 7: each call
    costs 0.2 s, and a caller resubmits 2 ms after its answer."""
    import time

    calls = CoalescedCalls(lambda items: time.sleep(0.2) or items, max_batch=32, fill_to=8,
                           linger_fraction=linger_fraction, max_linger_s=0.1)

    async def caller(delay: float):
        await asyncio.sleep(delay)
        for i in range(6):
            await calls(i)
            await asyncio.sleep(0.002)

    async def everyone():
        await asyncio.gather(caller(0), *(caller(0.05) for _ in range(7)))

    asyncio.run(everyone())
    return calls.batch_sizes


def test_callers_split_in_cohorts_meet_in_one_batch_after_a_short_wait():
    """Without waiting, the first caller and the other seven stay two cohorts, each resubmitting
    while the other's batch runs, for every call; with it they meet from the second batch on (the
    first caller, a batch ahead, is done before the others' last call)."""
    apart, met = _cohorts(linger_fraction=0.0), _cohorts(linger_fraction=0.5)
    assert sum(apart) == sum(met) == 48
    assert apart.count(1) == 6, apart  # the cohorts never met: the first caller was alone every time
    assert met == [1, 8, 8, 8, 8, 8, 7], met
