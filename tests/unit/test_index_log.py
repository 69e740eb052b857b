"""The retrieval index's store: an index reopened on the same directory has the items it was
left with (adds, replacements, deletes), a torn last line costs only that line, and reopening
compacts the log into a snapshot of the live items once the lines since the last one reach their
share of it."""

import numpy as np
import pytest

from ops.index_log import COMPACT_SHARE, LOG_NAME, IndexLog
from ops.index_snapshot import SNAPSHOT_PREFIX
from pipelines.serve_index import RetrievalIndex
from tests.index_store import changes, log_lines, snapshot_epoch, snapshots, tombstones

WIDTH = 8


def make_index(store=None):
    """The class Serve deploys, used here without Serve, once its start's compaction (in the
    background, pipelines/index_upkeep.py) is done."""
    index = RetrievalIndex.func_or_class(WIDTH, store)
    assert index.wait_for_upkeep(timeout=60)
    return index


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
    # compacted: 5 adds and a delete became a snapshot of the 3 live items, the log its one line
    assert len(log_lines(tmp_path)) == 1 and snapshots(tmp_path) == [SNAPSHOT_PREFIX + snapshot_epoch(tmp_path)]
    from_snapshot = make_index(str(tmp_path))  # read from the snapshot alone
    assert from_snapshot.page() == index.page() and from_snapshot.search(_unit(10), k=3) == expected
    from_snapshot.add("clip-4", _unit(4), {"kind": "video"})  # a line after the snapshot
    assert from_snapshot.delete("clip-0")
    again = make_index(str(tmp_path))
    assert [i["id"] for i in again.page()[0]] == ["clip-1", "clip-3", "clip-4"]
    assert again.search(_unit(4), k=1)[0]["id"] == "clip-4"


def test_a_start_compacts_only_once_the_lines_since_the_snapshot_reach_their_share(tmp_path):
    """Rewriting the whole index (61 GB for a 10M-item shard) because one item was added since the
    last start would make every restart a full write: a start writes nothing until the log's lines
    since the snapshot reach 1/COMPACT_SHARE of its size."""
    index = make_index(str(tmp_path))
    index.add_many([(f"clip-{i}", _unit(i), {"kind": "video"}) for i in range(200)])
    assert not snapshots(tmp_path)  # adds only append
    make_index(str(tmp_path))  # the first start: a log of lines and no snapshot is compacted
    first = snapshots(tmp_path)
    snapshot_bytes = (tmp_path / first[0] / "vectors.npy").stat().st_size
    path = tmp_path / LOG_NAME
    header = path.stat().st_size
    written = path.stat().st_ino  # compacting writes a new log and renames it over the old one
    shard, added = make_index(str(tmp_path)), 0
    assert path.stat().st_ino == written  # nothing changed since: nothing written
    while (path.stat().st_size - header) * COMPACT_SHARE < snapshot_bytes:
        shard.add(f"new-{added}", _unit(1000 + added), {"kind": "video"})
        if (path.stat().st_size - header) * COMPACT_SHARE < snapshot_bytes:
            shard = make_index(str(tmp_path))  # under the share: the snapshot stays, the lines are replayed
            assert snapshots(tmp_path) == first and path.stat().st_ino == written
        added += 1
    assert 1 < added and len(changes(tmp_path)) == added
    shard = make_index(str(tmp_path))  # the share reached: a new snapshot, the old one gone
    assert snapshots(tmp_path) != first and len(snapshots(tmp_path)) == 1 and not changes(tmp_path)
    assert len(shard.index) == 200 + added
    path.write_text(path.read_text().rstrip("\n"))  # a whole last line but no newline: the next add would join it
    make_index(str(tmp_path)).add("clip-x", _unit(7), {"kind": "video"})
    assert path.read_text().endswith("\n") and len(log_lines(tmp_path)) == 2
    assert len(make_index(str(tmp_path)).index) == 201 + added


def test_a_crash_while_compacting_leaves_the_previous_snapshot_in_force(tmp_path, monkeypatch):
    """The log's rename is the commit: a crash after the new snapshot is written but before the log
    names it leaves the old snapshot and every line in force, and the orphan is removed later."""
    import os

    index = make_index(str(tmp_path))
    index.add_many([(f"clip-{i}", _unit(i), {"kind": "video"}) for i in range(5)])
    make_index(str(tmp_path))
    shard = make_index(str(tmp_path))
    shard.add("clip-5", _unit(5), {"kind": "image"})
    assert shard.delete("clip-0")
    before, expected = snapshots(tmp_path), shard.page()
    real_replace = os.replace

    def crash_on_the_log(source, target):
        if str(target).endswith(LOG_NAME):
            raise OSError("killed")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_on_the_log)
    with pytest.raises(OSError, match="killed"):
        shard.log.compact(shard.index)
    monkeypatch.undo()
    orphan = sorted(set(snapshots(tmp_path)) - set(before))
    assert len(orphan) == 1 and snapshot_epoch(tmp_path) == before[0][len(SNAPSHOT_PREFIX):]  # named by nothing
    assert len(changes(tmp_path)) == 2  # the lines since the old snapshot, still in force
    shard = make_index(str(tmp_path))
    assert shard.page() == expected
    shard.log.compact(shard.index)
    assert len(snapshots(tmp_path)) == 1 and snapshots(tmp_path) != orphan  # the orphan removed
    assert make_index(str(tmp_path)).page() == expected


def test_a_store_naming_a_missing_snapshot_is_refused_not_served_empty(tmp_path):
    import shutil

    index = make_index(str(tmp_path))
    index.add("a", _unit(1), {"kind": "video"})
    make_index(str(tmp_path))
    shutil.rmtree(tmp_path / snapshots(tmp_path)[0])
    with pytest.raises(ValueError, match="names the snapshot .* which cannot be read"):
        make_index(str(tmp_path))


def test_a_log_of_lines_only_is_read_and_becomes_a_snapshot(tmp_path):
    """A store written before snapshots (the log's lines alone) is replayed whole at its first start."""
    import base64
    import json

    lines = [{"op": "add", "id": f"old-{i}", "meta": {"kind": "video"},
              "embedding": base64.b64encode(_unit(i).astype("<f4").tobytes()).decode()} for i in range(3)]
    lines.append({"op": "delete", "id": "old-1", "tombstone": True})
    (tmp_path / LOG_NAME).write_text("".join(json.dumps(line) + "\n" for line in lines))
    index = make_index(str(tmp_path))
    assert [i["id"] for i in index.page()[0]] == ["old-0", "old-2"] and index.removed == {"old-1"}
    assert len(snapshots(tmp_path)) == 1 and tombstones(tmp_path, WIDTH) == {"old-1"}
    assert make_index(str(tmp_path)).search(_unit(2), 1)[0]["id"] == "old-2"


def test_a_torn_last_line_is_skipped_and_counted(tmp_path):
    log = IndexLog(tmp_path)
    log.add("a", _unit(1), {"kind": "video"})
    log.add("b", _unit(2), {"kind": "video"})
    text = (tmp_path / LOG_NAME).read_text()
    (tmp_path / LOG_NAME).write_text(text[: len(text) - 40])  # killed in the middle of writing "b"
    reopened = IndexLog(tmp_path)
    assert [i["id"] for i in reopened.replay(WIDTH).list()] == ["a"] and reopened.skipped == 1
    assert [i["id"] for i in IndexLog(tmp_path).open(WIDTH).list()] == ["a"]  # opening compacts the log
    assert len(log_lines(tmp_path)) == 1 and not changes(tmp_path)
    reopened = IndexLog(tmp_path)
    assert [i["id"] for i in reopened.open(WIDTH).list()] == ["a"] and reopened.skipped == 0


def test_another_models_store_is_refused_not_mixed(tmp_path):
    make_index(str(tmp_path)).add("a", _unit(1), {"kind": "video"})
    with pytest.raises(ValueError, match="width 8, this model's are 16"):
        RetrievalIndex.func_or_class(16, str(tmp_path))
    make_index(str(tmp_path))  # now in a snapshot: refused the same way
    with pytest.raises(ValueError, match="snapshot-.* holds embeddings of width 8, this model's are 16"):
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
    assert index.add_many(items) == 0  # a second replica
    assert (tmp_path / LOG_NAME).stat().st_size == size
    restarted = make_index(str(tmp_path))  # a second start (compacts the log of lines into a snapshot)
    size = (tmp_path / LOG_NAME).stat().st_size
    assert restarted.add_many(items) == 0 and (tmp_path / LOG_NAME).stat().st_size == size
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
        assert tombstones(tmp_path, WIDTH) == {"shard/1"}  # only the cache item's, not the upload's
        assert '"upload"' not in (tmp_path / LOG_NAME).read_text()
    index.add("shard/1", _unit(1), {"kind": "video"})  # explicitly added again over HTTP
    if stored:
        index = make_index(store)
    assert "shard/1" in [item["id"] for item in index.page()[0]]
    if stored:
        assert tombstones(tmp_path, WIDTH) == set()  # the tombstone lifted
        index.log.compact(index.index)
        assert tombstones(tmp_path, WIDTH) == set() and "shard/1" in [i["id"] for i in make_index(store).page()[0]]


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
