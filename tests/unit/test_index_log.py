"""The retrieval index's on-disk log: an index reopened on the same directory has the items it was
left with (adds, replacements, deletes), a torn last line costs only that line, and reopening
compacts the log to the live items."""

import numpy as np
import pytest

from ops.index_log import LOG_NAME, IndexLog
from pipelines.serve_index import RetrievalIndex

WIDTH = 8


def make_index(store=None):  # the class Serve deploys, used here without Serve
    return RetrievalIndex.func_or_class(WIDTH, store)


def _unit(seed: int, dim: int = WIDTH) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_a_reopened_index_has_the_items_it_was_left_with(tmp_path):
    index = make_index(str(tmp_path))
    for i in range(4):
        index.add(f"clip-{i}", _unit(i), {"kind": "video"})
    index.add("clip-1", _unit(10), {"kind": "image"})  # replaces
    assert index.delete("clip-2") and not index.delete("clip-2")
    expected = index.search(_unit(10), k=3)

    reopened = make_index(str(tmp_path))
    assert reopened.page()[0] == index.page()[0] == [
        {"id": "clip-0", "kind": "video"}, {"id": "clip-1", "kind": "image"}, {"id": "clip-3", "kind": "video"}]
    assert reopened.search(_unit(10), k=3) == expected  # same embeddings, bit for bit
    assert reopened.search(_unit(10), k=3)[0]["id"] == "clip-1"
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    assert len(lines) == 3  # compacted: 5 adds and a delete became the 3 live items


def test_a_log_with_nothing_to_drop_is_not_rewritten_at_start(tmp_path):
    index = make_index(str(tmp_path))
    index.add_many([(f"clip-{i}", _unit(i), {"kind": "video"}) for i in range(3)])
    path = tmp_path / LOG_NAME
    written = path.stat().st_ino  # compacting writes a new file and renames it over the log
    make_index(str(tmp_path)).add("clip-3", _unit(3), {"kind": "video"})  # a new id: nothing to drop
    assert path.stat().st_ino == written and len(path.read_text().splitlines()) == 4
    reopened = make_index(str(tmp_path))
    assert path.stat().st_ino == written and [i["id"] for i in reopened.page()[0]] == [f"clip-{i}" for i in range(4)]
    changes = [(lambda shard: shard.add("clip-0", _unit(9), {"kind": "image"}), 1),  # replaced: its old line is dead
               (lambda shard: shard.delete("clip-1"), 2),  # the delete and the add it deletes
               (lambda shard: shard.add("clip-0", _unit(9), {"kind": "image"}), 1)]  # the same again: still dead
    for change, dead in changes:
        change(reopened)
        lines = len(path.read_text().splitlines())
        reopened = make_index(str(tmp_path))
        assert path.stat().st_ino != written and len(path.read_text().splitlines()) == lines - dead
        written = path.stat().st_ino
    assert reopened.page()[0] == [{"id": "clip-0", "kind": "image"}, {"id": "clip-2", "kind": "video"},
                                  {"id": "clip-3", "kind": "video"}]
    path.write_text(path.read_text().rstrip("\n"))  # a whole last line but no newline: the next add would join it
    make_index(str(tmp_path))
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 3


def test_a_torn_last_line_is_skipped_and_counted(tmp_path):
    log = IndexLog(tmp_path)
    log.add("a", _unit(1), {"kind": "video"})
    log.add("b", _unit(2), {"kind": "video"})
    text = (tmp_path / LOG_NAME).read_text()
    (tmp_path / LOG_NAME).write_text(text[: len(text) - 40])  # killed in the middle of writing "b"
    reopened = IndexLog(tmp_path)
    assert [i["id"] for i in reopened.replay(WIDTH).list()] == ["a"] and reopened.skipped == 1
    assert [i["id"] for i in IndexLog(tmp_path).open(WIDTH).list()] == ["a"]  # opening compacts the log
    assert (tmp_path / LOG_NAME).read_text().count("\n") == 1


def test_another_models_store_is_refused_not_mixed(tmp_path):
    make_index(str(tmp_path)).add("a", _unit(1), {"kind": "video"})
    with pytest.raises(ValueError, match="width 8, this model's are 16"):
        RetrievalIndex.func_or_class(16, str(tmp_path))
    with pytest.raises(ValueError, match="width 16 for an index of width 8"):
        make_index().add("b", _unit(2, dim=16), {"kind": "video"})


def test_without_a_store_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = make_index()
    index.add("a", _unit(1), {"kind": "video"})
    assert index.page()[0] == [{"id": "a", "kind": "video"}] and not list(tmp_path.iterdir())


def test_search_equals_a_full_ranking_through_adds_replacements_and_deletes():
    """The kept matrix (rows moved on delete, grown by doubling) ranks like a fresh one would."""
    from ops.vector_index import VectorIndex

    rng = np.random.default_rng(0)
    index, live = VectorIndex(WIDTH), {}
    for step in range(300):
        item_id = f"item-{rng.integers(60)}"
        if rng.random() < 0.3:
            assert index.delete(item_id) == (live.pop(item_id, None) is not None)
        else:
            live[item_id] = _unit(step)
            index.add(item_id, live[item_id], {"kind": "video"})
    query = _unit(1000)
    ids = list(live)
    scores = np.stack([live[i] for i in ids]) @ query
    expected = [ids[i] for i in np.argsort(-scores)]
    for k in (1, 5, len(ids), len(ids) + 10):
        assert [r["id"] for r in index.search(query, k)] == expected[:k]
    assert sorted(i["id"] for i in index.list()) == sorted(ids) and len(index) == len(ids)


def test_re_adding_unchanged_items_writes_nothing(tmp_path):
    """The ingress re-adds a feature cache's items at every start, once per ingress replica: only
    new or changed items reach the log, in one write."""
    items = [(f"shard/{i}", _unit(i), {"kind": "video", "caption": f"c{i}"}) for i in range(50)]
    index = make_index(str(tmp_path))
    assert index.add_many(items) == 50
    size = (tmp_path / LOG_NAME).stat().st_size
    assert make_index(str(tmp_path)).add_many(items) == 0  # a second start, or a second replica
    assert (tmp_path / LOG_NAME).stat().st_size == size
    changed = [items[0], (items[1][0], items[1][1], {"kind": "video", "caption": "new"})]
    reopened = make_index(str(tmp_path))
    assert reopened.add_many(changed) == 1
    assert make_index(str(tmp_path)).page()[0][1] == {"id": "shard/1", "kind": "video", "caption": "new"}


def test_a_store_is_refused_to_another_model_of_the_same_shape(tmp_path, captioning_model_dir):
    """Same width, other weights (a retrained model): its stored Ŝ_Y are not comparable with this
    model's, and mixing them would rank old predictions against new ones."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from ops.index_log import prediction_fingerprint

    same = shutil.copytree(captioning_model_dir, tmp_path / "same", ignore=shutil.ignore_patterns("y_decoder"))
    retrained = shutil.copytree(same, tmp_path / "retrained")
    heads = load_file(retrained / "heads.safetensors")
    name = sorted(heads)[0]
    heads[name] = np.asarray(heads[name] + 1, dtype=heads[name].dtype)
    save_file(heads, retrained / "heads.safetensors")
    assert prediction_fingerprint(captioning_model_dir) == prediction_fingerprint(same)
    assert prediction_fingerprint(retrained) != prediction_fingerprint(same)

    store = tmp_path / "store"
    first = RetrievalIndex.func_or_class(WIDTH, str(store), prediction_fingerprint(same))
    first.add("a", _unit(1), {"kind": "video"})
    assert RetrievalIndex.func_or_class(WIDTH, str(store), prediction_fingerprint(same)).page() == first.page()
    with pytest.raises(ValueError, match="predictions of another model"):
        RetrievalIndex.func_or_class(WIDTH, str(store), prediction_fingerprint(retrained))
    unnamed = tmp_path / "unnamed"  # items, but no record of whose
    make_index(str(unnamed)).add("a", _unit(1), {"kind": "video"})
    with pytest.raises(ValueError, match="no model.json"):
        RetrievalIndex.func_or_class(WIDTH, str(unnamed), prediction_fingerprint(same))


@pytest.mark.parametrize("stored", [True, False])
def test_a_deleted_cache_item_is_not_added_back_by_the_next_ingress(tmp_path, stored):
    """Every ingress adds its --index-cache at start (each replica, each restart): a cache item
    deleted over HTTP used to come back with the next one. It stays deleted for the index's life,
    and with a store across restarts and compactions; an explicit add brings it back."""
    cache_items = [(f"shard/{i}", _unit(i), {"kind": "video", "caption": f"c{i}", "source": "cache/eval"})
                   for i in range(4)]
    store = str(tmp_path) if stored else None
    index = make_index(store)
    index.add_many(cache_items)
    index.add("upload", _unit(9), {"kind": "video"})
    assert index.delete("shard/1") and index.delete("upload")
    assert index.add_many(cache_items) == 0  # a second ingress replica starting
    ids = [item["id"] for item in index.page()[0]]
    assert ids == ["shard/0", "shard/2", "shard/3"]  # shard/1 still gone
    if stored:
        for _ in range(2):  # two restarts: the tombstone survives compaction
            index = make_index(store)
            assert index.add_many(cache_items) == 0 and "shard/1" not in [i["id"] for i in index.page()[0]]
        log = (tmp_path / LOG_NAME).read_text()
        assert log.count('"op": "delete"') == 1 and '"upload"' not in log  # only the cache item's tombstone
    index.add("shard/1", _unit(1), {"kind": "video"})  # explicitly added again over HTTP
    if stored:
        index = make_index(store)
    assert "shard/1" in [item["id"] for item in index.page()[0]]
    if stored:
        assert '"op": "delete"' not in (tmp_path / LOG_NAME).read_text()  # the tombstone lifted


def test_the_index_names_the_cache_items_an_ingress_still_has_to_predict(tmp_path):
    """An ingress predicts only these (a second replica or a restart against a kept index: none)."""
    meta = {i: {"kind": "video", "caption": f"c{i}", "source": "cache/eval"} for i in range(4)}
    index = make_index(str(tmp_path))
    assert index.missing([(f"shard/{i}", meta[i]) for i in range(4)]) == ["shard/0", "shard/1", "shard/2", "shard/3"]
    index.add_many([(f"shard/{i}", _unit(i), meta[i]) for i in range(3)])
    index.delete("shard/0")
    recaptioned = {**meta[2], "caption": "a new caption"}  # the cache was rebuilt with another caption
    asked = [(f"shard/{i}", meta[i]) for i in range(2)] + [("shard/2", recaptioned), ("shard/3", meta[3])]
    assert index.missing(asked) == ["shard/2", "shard/3"]  # 0 deleted over HTTP, 1 held as it is
    assert make_index(str(tmp_path)).missing(asked) == ["shard/2", "shard/3"]  # the same after a restart


def test_cache_items_no_served_cache_lists_are_dropped_uploads_kept(tmp_path):
    """The index mirrors its caches as they are now: a sample gone from a rebuilt cache, a cache no
    longer served, and items under ids of an older scheme (`shard/key`) leave it at the next start,
    without tombstones; items added over HTTP stay."""
    def cache_item(item_id, source, seed):
        return item_id, _unit(seed), {"kind": "video", "caption": f"c{seed}", "source": source}

    index = make_index(str(tmp_path))
    index.add_many([cache_item("eval/s0/a", "/c/eval", 1), cache_item("eval/s0/b", "/c/eval", 2),
                    cache_item("clips/s0/a", "/c/clips", 3), cache_item("s0/a", "/c/eval", 4)])
    index.add("upload", _unit(5), {"kind": "video"})
    dropped = index.drop_stale_cache_items({"/c/eval": ["eval/s0/a", "eval/s0/new"]})  # clips no longer served
    assert sorted(dropped) == ["clips/s0/a", "eval/s0/b", "s0/a"]
    assert [i["id"] for i in index.page()[0]] == ["eval/s0/a", "upload"]
    assert index.drop_stale_cache_items({"/c/eval": ["eval/s0/a"]}) == []  # a second ingress replica
    reopened = make_index(str(tmp_path))
    assert [i["id"] for i in reopened.page()[0]] == ["eval/s0/a", "upload"] and not reopened.removed
    assert reopened.missing([("eval/s0/b", {"kind": "video", "caption": "c2", "source": "/c/eval"})]) == ["eval/s0/b"]
    assert make_index().drop_stale_cache_items({}) == []  # no caches, no store: nothing to drop


def test_cache_item_ids_carry_the_caches_name():
    from ops.index_items import cache_item_id, cache_names

    assert cache_names(["s3://b/caches/action100m/", "/data/plm"]) == {"s3://b/caches/action100m/": "action100m",
                                                                       "/data/plm": "plm"}
    assert cache_item_id("plm", "00000", "clip7") == "plm/00000/clip7"
    with pytest.raises(ValueError, match="share the name 'eval'"):
        cache_names(["s3://a/eval", "s3://b/eval/"])
    with pytest.raises(ValueError, match="given twice"):
        cache_names(["s3://a/eval", "s3://a/eval/"])


def test_search_and_listing_restricted_to_a_prefix_equal_a_filtered_full_ranking():
    """`prefix` (one cache's items: `eval/`) ranks and lists as the full index filtered to it would,
    through deletes that move rows."""
    from ops.vector_index import VectorIndex

    index = VectorIndex(WIDTH)
    for i in range(40):
        index.add(f"{'eval' if i % 3 else 'clips'}/s0/{i}", _unit(i), {"kind": "video"})
    for i in (1, 3, 7):
        index.delete(f"{'eval' if i % 3 else 'clips'}/s0/{i}")
    query = _unit(1000)
    full = index.search(query, k=len(index))
    for prefix in ("eval/", "clips/", "nothing/"):
        expected = [r for r in full if r["id"].startswith(prefix)]
        assert index.search(query, k=5, prefix=prefix) == expected[:5]
        assert index.count(prefix) == len(expected)
        listed = [i["id"] for i in index.list(prefix=prefix)]
        assert sorted(listed) == sorted(r["id"] for r in expected)
        assert [i["id"] for i in index.list(2, 3, prefix)] == listed[2:5]
    assert index.search(query, k=5, prefix=None) == full[:5] and index.count() == 37
    # the rows kept for a prefix follow the index: a delete moves the last row into the hole, an add appends
    index.delete("eval/s0/2")
    index.add("eval/s0/new", query, {"kind": "video"})
    full = index.search(query, k=len(index))
    assert index.search(query, k=5, prefix="eval/") == [r for r in full if r["id"].startswith("eval/")][:5]
    assert index.search(query, k=1, prefix="eval/")[0]["id"] == "eval/s0/new"
