"""The RetrievalIndex deployment's replica, run in-process on a real LanceDB table: adds and deletes
persist for the next replica, two replicas adding at once lose nothing, listing pages in the
table's order, `probe` is checked against the ANN index, and small writes are compacted in the
background while searches go on. (Over HTTP on real Serve: tests/integration/serve/test_serve.py.)"""

from __future__ import annotations

import asyncio

import lancedb
import numpy as np
import pytest

from ops.retrieval.table import TABLE_NAME
from pipelines.retrieval.deployment import IndexSettings, ProbeOutOfRange, RetrievalIndex
from tests.retrieval_tables import clustered, exact_ranking, unit_rows, write_table

REPLICA = RetrievalIndex.func_or_class  # the class Serve deploys, without Serve
ROWS = 3000


async def replica(uri: str, fingerprint: str = "test-model", **settings) -> REPLICA:
    index = REPLICA.__new__(REPLICA)
    await index.__init__(uri, fingerprint, IndexSettings(**settings))  # what Serve awaits
    return index


def vector(seed: int, width: int = 16) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed).standard_normal((1, width)))[0].astype(np.float32)


def test_adds_and_deletes_persist_for_the_next_replica(tmp_path):
    write_table(str(tmp_path), unit_rows(np.random.default_rng(0).standard_normal((3, 16))).astype(np.float32),
                ["eval/0/a", "eval/0/b", "train/0/c"], captions=["a", "b", "c"], sources=["eval", "eval", "train"])

    async def run():
        first = await replica(str(tmp_path))
        assert await first.add("mine/1", vector(1), "image") == {"id": "mine/1", "kind": "image", "caption": None,
                                                                 "source": None}
        await first.add("mine/2", vector(2), "video")
        assert await first.delete("eval/0/b") is True
        assert await first.delete("eval/0/b") is False  # unknown now: the ingress answers 404
        await first.add("mine/1", vector(3), "video")  # the same id again replaces the item
        items, total = await first.page(0, 10)
        found = await first.search(vector(3), 1)
        first.close()
        second = await replica(str(tmp_path))  # a restarted replica: nothing but the table
        assert await second.page(0, 10) == (items, total)
        assert await second.search(vector(3), 1) == found
        second.close()
        return items, total, found

    items, total, found = asyncio.run(run())
    # in the table's order: the order of adding, the replaced item moved to the end
    assert [i["id"] for i in items] == ["eval/0/a", "train/0/c", "mine/2", "mine/1"] and total == 4
    assert items[0] == {"id": "eval/0/a", "kind": "video", "caption": "a", "source": "eval"}
    assert found[0]["id"] == "mine/1" and found[0]["kind"] == "video" and found[0]["score"] == pytest.approx(1, abs=1e-3)


def test_pages_and_prefix_listing(tmp_path):
    ids = [f"{'eval' if i % 2 else 'train'}/{i:03d}" for i in range(25)]
    write_table(str(tmp_path), clustered(25, 16, 3), ids)

    async def run():
        index = await replica(str(tmp_path))
        pages = [await index.page(offset, 10) for offset in (0, 10, 20)]
        evals = await index.page(3, 5, prefix="eval/")
        index.close()
        return pages, evals

    pages, evals = asyncio.run(run())
    assert [i["id"] for items, _ in pages for i in items] == ids and {total for _, total in pages} == {25}
    assert [i["id"] for i in evals[0]] == [i for i in ids if i.startswith("eval/")][3:8] and evals[1] == 12


def test_two_replicas_adding_at_once_lose_nothing(tmp_path):
    """Each add is a LanceDB commit; commits racing from two replicas are retried, not lost."""
    write_table(str(tmp_path), unit_rows(np.eye(16)[:1]).astype(np.float32), ["seed"])

    async def run():
        replicas = [await replica(str(tmp_path)), await replica(str(tmp_path))]
        await asyncio.gather(*(replicas[i % 2].add(f"added/{i:02d}", vector(i), "video") for i in range(24)))
        # refresh_s 0: each replica sees the other's commits at its next read
        listed = [await r.page(0, 100) for r in replicas]
        for r in replicas:
            r.close()
        return listed

    listed = asyncio.run(run())
    expected = {"seed", *(f"added/{i:02d}" for i in range(24))}
    for items, total in listed:
        assert {i["id"] for i in items} == expected and total == 25


def test_probe_is_checked_against_the_ann_index(tmp_path):
    vectors = clustered(ROWS, 32, clusters=8, seed=4)
    ids = [f"v{i:04d}" for i in range(ROWS)]
    write_table(str(tmp_path / "ann"), vectors, ids, partitions=6)
    write_table(str(tmp_path / "exact"), vectors[:50], ids[:50])

    async def run():
        # refine x (k + 1) above the rows: every candidate re-scored exactly, so the answer is exact
        ann = await replica(str(tmp_path / "ann"), refine=ROWS)
        exact = await replica(str(tmp_path / "exact"))
        assert ann.ann["partitions"] == 6 and exact.ann is None
        with pytest.raises(ProbeOutOfRange, match="probe 7 exceeds the index's 6 partitions"):
            await ann.search(vectors[0], 5, probe=7)
        probed_all = await ann.search(vectors[0], 5, probe=6)
        ignored = await exact.search(vectors[0], 5, probe=1000)  # no ANN index: an exact search
        ann.close(), exact.close()
        return probed_all, ignored

    probed_all, ignored = asyncio.run(run())
    assert [h["id"] for h in probed_all] == [i for i, _ in exact_ranking(vectors, ids, vectors[0])[:5]]
    assert [h["id"] for h in ignored] == [i for i, _ in exact_ranking(vectors[:50], ids[:50], vectors[0])[:5]]


def test_small_writes_are_compacted_in_the_background_while_searches_go_on(tmp_path):
    """Every add leaves a small file and a version; once `compact_after_writes` have come, the
    upkeep compacts them into one file and removes old versions (LanceDB's optimize), and every
    search sent meanwhile is answered, with every item."""
    write_table(str(tmp_path), unit_rows(np.eye(16)[:2]).astype(np.float32), ["a", "b"])

    async def run():
        index = await replica(str(tmp_path), compact_after_writes=8, keep_versions_s=0.5)
        for i in range(8):
            await index.add(f"added/{i}", vector(10 + i), "video")
        table = lancedb.connect(str(tmp_path)).open_table(TABLE_NAME)
        fragments_before, versions_before = table.stats()["fragment_stats"]["num_fragments"], len(table.list_versions())
        answered = []
        deadline = asyncio.get_running_loop().time() + 30
        while index.writes_pending:  # the upkeep, every REFRESH_S, finds the compaction due
            assert asyncio.get_running_loop().time() < deadline, "no compaction within 30 s"
            answered.append(len(await index.search(vector(10), 10)))
            await asyncio.sleep(0.05)
        table.checkout_latest()
        index.close()
        return fragments_before, versions_before, table, answered

    fragments_before, versions_before, table, answered = asyncio.run(run())
    assert fragments_before == 9 and table.stats()["fragment_stats"]["num_fragments"] == 1
    assert len(table.list_versions()) < versions_before and table.count_rows() == 10
    assert answered and set(answered) == {10}


def test_an_index_of_another_model_is_refused(tmp_path):
    write_table(str(tmp_path), np.eye(4, dtype=np.float32), fingerprint="model-a")
    with pytest.raises(ValueError, match="holds predictions of model model-a, this model is model-b"):
        asyncio.run(replica(str(tmp_path), "model-b"))
