"""The retrieval index split over shards answers as one index would: the same top k for any query
and prefix, every item listed exactly once across pages, adds, deletes and a cache's fill routed to
the shard that holds the id, and each shard's store reopened with its own items. The shards here
are the class Serve deploys, called in this process (tests/integration/test_serve.py serves a
split index over HTTP)."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

from ops.index_shards import merge_top_k, page_plan, shard_of, shard_store, split_by_shard
from pipelines.serve_index import RetrievalIndex
from pipelines.sharded_index import ShardedIndex
from tests.search_results import assert_same_results

WIDTH = 8


class InProcess:
    """A DeploymentHandle's calling convention, `handle.method.remote(...)` -> an awaitable, over an
    object in this process: what the ingress does with a handle, without Serve's transport."""

    def __init__(self, target):
        self.target = target

    def __getattr__(self, name):
        method = getattr(self.target, name)

        class Call:
            @staticmethod
            async def remote(*args, **kwargs):
                result = method(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result

        return Call


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=WIDTH).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _ids(count: int) -> list[str]:
    return [f"{'eval' if i % 3 else 'train'}/{i // 10:05d}/clip{i}" for i in range(count)]


def split_index(shards: int, store=None, model=None) -> tuple[ShardedIndex, list[RetrievalIndex]]:
    parts = [RetrievalIndex.func_or_class(WIDTH, store, model, shard, shards) for shard in range(shards)]
    return ShardedIndex([InProcess(part) for part in parts]), parts


def run(coroutine):
    return asyncio.run(coroutine)


def test_an_ids_shard_is_the_same_in_every_process_and_shards_are_balanced():
    ids = _ids(4000)
    here = [shard_of(item_id, 4) for item_id in ids[:50]]
    code = "import sys; from ops.index_shards import shard_of; print([shard_of(i, 4) for i in sys.argv[1:]])"
    for seed in ("1", "2"):  # str hashes differ between these processes; an id's shard must not
        out = subprocess.run([sys.executable, "-c", code, *ids[:50]], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PYTHONPATH": ":".join(sys.path)}).stdout
        assert out.strip() == str(here)
    sizes = [len(part) for part in split_by_shard(ids, 4)]
    assert sum(sizes) == 4000 and 900 < min(sizes) <= max(sizes) < 1100, sizes


def test_a_split_index_searches_lists_and_counts_like_one_index():
    whole = RetrievalIndex.func_or_class(WIDTH)
    split, parts = split_index(3)
    ids = _ids(60)
    for i, item_id in enumerate(ids):
        whole.add(item_id, _unit(i), {"kind": "video"})
        run(split.add(item_id, _unit(i), {"kind": "video"}))
    assert all(len(part.index) for part in parts) and sum(len(part.index) for part in parts) == 60

    for seed in range(100, 120):
        for k, prefix in ((1, None), (5, None), (60, None), (100, None), (4, "train/"), (50, "eval/"), (3, "none/")):
            assert_same_results(run(split.search(_unit(seed), k, prefix)), whole.search(_unit(seed), k, prefix),
                                (seed, k, prefix))

    for prefix in (None, "eval/", "train/"):
        everything, total = run(split.page(0, 1000, prefix))
        assert total == whole.page(0, None, prefix)[1] and len(everything) == total
        assert sorted(i["id"] for i in everything) == sorted(i["id"] for i in whole.page(0, None, prefix)[0])
        for size in (1, 7, 25):  # pages of any size cover the listing once, in one order
            paged = [item for offset in range(0, total, size) for item in run(split.page(offset, size, prefix))[0]]
            assert paged == everything, (prefix, size)
    last, total = run(split.page(58, 10))  # a page running past the end
    assert total == 60 and last == run(split.page(0, 60))[0][58:]


def test_deletes_adds_and_a_caches_fill_reach_the_shard_holding_the_id():
    split, parts = split_index(4)
    items = [(item_id, _unit(i), {"kind": "video", "caption": f"c{i}", "source": "eval"})
             for i, item_id in enumerate(_ids(40))]
    assert sorted(run(split.missing([(i, meta) for i, _, meta in items]))) == sorted(i for i, _, _ in items)
    assert run(split.add_many(items)) == 40 and run(split.add_many(items)) == 0  # held unchanged: nothing written
    for part, shard in zip(parts, range(4)):
        assert all(shard_of(item_id, 4) == shard for item_id in part.index.meta)

    gone = items[5][0]
    assert run(split.delete(gone)) and not run(split.delete(gone))
    assert run(split.missing([(i, meta) for i, _, meta in items])) == []  # a deleted cache item stays deleted
    assert run(split.add_many(items)) == 0

    # the cache is rebuilt with only the items shards 0 and 1 hold: shards 2 and 3, told of none of
    # its ids, drop all of theirs
    kept = [i for i, _, _ in items if shard_of(i, 4) < 2]
    dropped = run(split.drop_stale_cache_items({"eval": kept, "train": []}))
    assert sorted(dropped) == sorted(i for i, _, _ in items if shard_of(i, 4) >= 2 and i != gone)
    assert sorted(i["id"] for i in run(split.page(0, 1000))[0]) == sorted(set(kept) - {gone})


def test_each_shard_keeps_its_store_and_a_store_keeps_its_shard_count(tmp_path):
    split, _ = split_index(3, str(tmp_path))
    for i, item_id in enumerate(_ids(30)):
        run(split.add(item_id, _unit(i), {"kind": "video"}))
    run(split.delete(_ids(30)[3]))
    reopened, parts = split_index(3, str(tmp_path))
    assert run(reopened.page(0, 100)) == run(split.page(0, 100))
    assert_same_results(run(reopened.search(_unit(7), 5)), run(split.search(_unit(7), 5)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000-of-003", "shard-001-of-003", "shard-002-of-003"]

    for shards in (1, 2, 4):  # another count would look for its ids on other shards
        with pytest.raises(ValueError, match=f"split over 3 shard.*index_shards=3.*vljepa index-reshard"):
            RetrievalIndex.func_or_class(WIDTH, str(tmp_path), None, 0, shards)
    unsplit = tmp_path.parent / "unsplit"
    RetrievalIndex.func_or_class(WIDTH, str(unsplit)).add("a", _unit(1), {"kind": "video"})
    with pytest.raises(ValueError, match="split over 1 shard"):
        shard_store(unsplit, 0, 2)
    assert shard_store(unsplit, 0, 1) == unsplit  # an unsplit index's store is the directory itself, as before


def test_merging_and_paging_pieces():
    per_shard = [[{"id": "a", "score": 0.9}, {"id": "b", "score": 0.1}], [], [{"id": "c", "score": 0.5}]]
    assert [r["id"] for r in merge_top_k(per_shard, 2)] == ["a", "c"]
    assert [r["id"] for r in merge_top_k(per_shard, 10)] == ["a", "c", "b"]
    assert page_plan([3, 0, 4], 0, 10) == [(0, 0, 3), (2, 0, 4)]
    assert page_plan([3, 0, 4], 2, 3) == [(0, 2, 1), (2, 0, 2)]
    assert page_plan([3, 0, 4], 7, 5) == [] and page_plan([3, 4], 0, 0) == []


def test_a_shards_requests_arriving_at_once_never_mix():
    """Serve runs the index's methods on a thread pool: a search's ids must be those of the rows it
    scored while deletes and adds move rows in other threads (each result's score is its own
    item's dot product with the query)."""
    import threading

    index = RetrievalIndex.func_or_class(WIDTH)
    embeddings = {f"item-{i}": _unit(i) for i in range(20000)}
    index.add_many([(item_id, e, {"kind": "video"}) for item_id, e in embeddings.items()])
    query, stop, wrong = _unit(99999), threading.Event(), []

    def churn():  # delete and re-add items: each delete moves the last row into the hole
        i = 0
        while not stop.is_set():
            item_id = f"item-{i % 20000}"
            index.delete(item_id)
            index.add(item_id, embeddings[item_id], {"kind": "video"})
            i += 7

    def search():
        for _ in range(150):
            for result in index.search(query, 20):
                if abs(result["score"] - float(embeddings[result["id"]] @ query)) > 1e-5:
                    wrong.append(result)

    workers = [threading.Thread(target=churn) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        search()
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not wrong, wrong[:3]


def test_a_resharded_store_serves_the_same_index_with_another_count(tmp_path, capsys):
    """`vljepa index-reshard`: 3 shards -> 2 -> 1, the same items, rankings and deletions each time,
    the model record kept, nothing of the old layout left."""
    from ops.index_reshard import reshard_store
    from pipelines.index_reshard import main

    store = tmp_path / "store"
    split, _ = split_index(3, str(store), model="fp-1")
    cached = [(item_id, _unit(i), {"kind": "video", "caption": f"c{i}", "source": "eval"})
              for i, item_id in enumerate(_ids(30))]
    run(split.add_many(cached))
    for i in range(5):
        run(split.add(f"upload-{i}", _unit(100 + i), {"kind": "image"}))
    for item_id in (cached[4][0], cached[9][0], "upload-2"):  # two cache items leave tombstones
        assert run(split.delete(item_id))
    listed = sorted(i["id"] for i in run(split.page(0, 1000))[0])
    ranked = [run(split.search(_unit(seed), 7)) for seed in range(200, 205)]

    for shards in (2, 1):
        assert main(["--store", str(store), "--shards", str(shards), "--json"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["to"] == shards and sum(result["items"]) == len(listed) and result["tombstones"] == 2
        reopened, _ = split_index(shards, str(store), model="fp-1")
        assert sorted(i["id"] for i in run(reopened.page(0, 1000))[0]) == listed
        for seed, expected in zip(range(200, 205), ranked):
            assert_same_results(run(reopened.search(_unit(seed), 7)), expected, (shards, seed))
        # the deleted cache items stay deleted: an ingress re-adding the cache is told they are not missing
        assert run(reopened.missing([(i, meta) for i, _, meta in cached])) == []
        with pytest.raises(ValueError, match="another model"):
            RetrievalIndex.func_or_class(WIDTH, str(store), "fp-2", 0, shards)
    names = sorted(p.name for p in store.iterdir())  # an unsplit store again, its one snapshot
    assert [n for n in names if not n.startswith("snapshot-")] == ["index.jsonl", "lock", "model.json"]
    assert len(names) == 4

    assert main(["--store", str(store), "--shards", "1"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(ValueError, match="holds no index"):
        main(["--store", str(tmp_path / "empty"), "--shards", "2"])
    # a store left with deletions only (every item gone, one cache item's tombstone kept)
    emptied = RetrievalIndex.func_or_class(WIDTH, str(tmp_path / "emptied"), "fp-1")
    emptied.add_many([cached[0]])
    assert emptied.delete(cached[0][0])
    RetrievalIndex.func_or_class(WIDTH, str(tmp_path / "emptied"), "fp-1")  # reopening compacts: no add line left
    assert reshard_store(tmp_path / "emptied", 2) == {"from": 1, "to": 2, "items": [0, 0], "tombstones": 1, "skipped": 0}
