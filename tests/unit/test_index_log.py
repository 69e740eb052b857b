"""The retrieval index's on-disk log: an index reopened on the same directory has the items it was
left with (adds, replacements, deletes), a torn last line costs only that line, and reopening
compacts the log to the live items."""

import numpy as np

from ops.index_log import LOG_NAME, IndexLog
from pipelines.serve_deployments import RetrievalIndex

Index = RetrievalIndex.func_or_class  # the class Serve deploys, used here without Serve


def _unit(seed: int, dim: int = 8) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_a_reopened_index_has_the_items_it_was_left_with(tmp_path):
    index = Index(str(tmp_path))
    for i in range(4):
        index.add(f"clip-{i}", _unit(i), {"kind": "video"})
    index.add("clip-1", _unit(10), {"kind": "image"})  # replaces
    assert index.delete("clip-2") and not index.delete("clip-2")
    expected = index.search(_unit(10), k=3)

    reopened = Index(str(tmp_path))
    assert reopened.list() == index.list() == [
        {"id": "clip-0", "kind": "video"}, {"id": "clip-1", "kind": "image"}, {"id": "clip-3", "kind": "video"}]
    assert reopened.search(_unit(10), k=3) == expected  # same embeddings, bit for bit
    assert reopened.search(_unit(10), k=3)[0]["id"] == "clip-1"
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    assert len(lines) == 3  # compacted: 5 adds and a delete became the 3 live items


def test_a_torn_last_line_is_skipped_and_counted(tmp_path):
    log = IndexLog(tmp_path)
    log.add("a", _unit(1), {"kind": "video"})
    log.add("b", _unit(2), {"kind": "video"})
    text = (tmp_path / LOG_NAME).read_text()
    (tmp_path / LOG_NAME).write_text(text[: len(text) - 40])  # killed in the middle of writing "b"
    reopened = IndexLog(tmp_path)
    assert list(reopened.replay()) == ["a"] and reopened.skipped == 1
    assert list(IndexLog(tmp_path).replay()) == ["a"]  # the compacted log reads clean


def test_without_a_store_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = Index()
    index.add("a", _unit(1), {"kind": "video"})
    assert index.list() == [{"id": "a", "kind": "video"}] and not list(tmp_path.iterdir())
