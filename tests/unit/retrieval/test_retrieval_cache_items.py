"""What an index build predicts, keeps and drops (ops/retrieval/cache_items.py), and the ids of a
feature cache's items."""

from __future__ import annotations

import pytest

from ops.retrieval.cache_items import ListedShard, cache_names, plan_build


def shard(name: str, shard_name: str, keys_and_captions: list[tuple[str, str]], first_row: int = 0) -> ListedShard:
    return ListedShard(cache=f"/caches/{name}", name=name, shard=shard_name,
                       rows=[first_row + 2 * i for i in range(len(keys_and_captions))],
                       ids=[f"{name}/{shard_name}/{key}" for key, _ in keys_and_captions],
                       captions=[caption for _, caption in keys_and_captions])


def test_a_build_predicts_what_is_new_or_changed_and_drops_what_no_cache_lists():
    listed = [shard("eval", "00000", [("a", "a red ball"), ("b", "a blue cube"), ("c", "a green cone")]),
              shard("eval", "00001", [("d", "a red cube")]),
              shard("train", "00000", [("a", "a red ball")])]
    held = {"eval/00000/a": "a red ball",  # unchanged
            "eval/00000/b": "a blue ball",  # the cache was rebuilt with another caption
            "eval/00001/d": "a red cube",
            "eval/00002/z": "gone",  # its shard is no longer in the cache
            "plm/00000/q": "a cache no longer listed"}
    plan = plan_build(listed, held)
    assert [(s.name, s.shard, s.ids, s.rows) for s in plan.predict] == [
        ("eval", "00000", ["eval/00000/b", "eval/00000/c"], [2, 4]),  # the rows to read, nothing else
        ("train", "00000", ["train/00000/a"], [0])]
    assert plan.predict[0].captions == ["a blue cube", "a green cone"]
    assert plan.stale == ["eval/00002/z", "plm/00000/q"]
    assert {name: (c.videos, c.unchanged, c.new, c.changed) for name, c in plan.counts.items()} == {
        "eval": (4, 2, 1, 1), "train": (1, 0, 1, 0)}
    assert (plan.new, plan.changed, plan.to_predict) == (2, 1, 3)
    again = plan_build(listed, {i: c for s in listed for i, c in zip(s.ids, s.captions)})
    assert again.to_predict == 0 and again.stale == []  # a re-run of the same caches changes nothing


def test_cache_names_refuse_ids_that_would_collide():
    """Items of a cache are `<cache name>/<shard>/<key>`: two caches named alike (each source cached
    to its own bucket's `eval/`) would share ids, one cache's videos replacing the other's."""
    assert cache_names(["s3://bucket/caches/action100m", "/data/plm/"]) == {
        "s3://bucket/caches/action100m": "action100m", "/data/plm/": "plm"}
    with pytest.raises(ValueError, match=r"index caches /a/eval and /b/eval share the name 'eval'"):
        cache_names(["/a/eval", "/b/eval"])
    with pytest.raises(ValueError, match="is given twice"):
        cache_names(["/a/eval", "/a/eval/"])
