"""The retrieval index's table (ops/retrieval/table.py) on real LanceDB tables on disk: searches
equal an exact numpy search, equal scores rank by id, the ANN index finds the true neighbours,
filters take prefixes literally, and a table that is missing or another model's is refused."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ops.retrieval.table import IndexNotFound, check_credentials, open_table, open_table_async, search, vector_query
from tests.retrieval_tables import clustered, exact_ranking, unit_rows, write_table


def searched(uri: str, query: np.ndarray, k: int, prefix: str | None = None, probe: int | None = None,
             refine: int | None = None) -> list[dict]:
    async def run():
        table = await open_table_async(uri, None, refresh_s=0)

        async def fetch(rows: int):
            return await vector_query(table.vector_search(query), rows, prefix, probe, refine).to_arrow()

        return await search(fetch, k)

    return asyncio.run(run())


def test_a_search_equals_an_exact_numpy_search(tmp_path):
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng.standard_normal((500, 32))).astype(np.float32)
    ids = [f"{'eval' if i % 3 else 'train'}/{i:04d}" for i in range(500)]
    write_table(str(tmp_path), vectors, ids)
    for query in rng.standard_normal((10, 32)).astype(np.float32):
        for prefix in (None, "train/"):
            expected = [(i, s) for i, s in exact_ranking(vectors, ids, query) if i.startswith(prefix or "")][:10]
            found = searched(str(tmp_path), query, 10, prefix)
            assert [hit["id"] for hit in found] == [i for i, _ in expected]
            assert [hit["score"] for hit in found] == pytest.approx([s for _, s in expected], abs=1e-5)
            assert all(hit["kind"] == "video" for hit in found)


def test_equal_scores_are_ranked_by_id_however_many_tie(tmp_path):
    """40 copies of one vector, added in shuffled order: the top 5 are the 5 least ids, though
    LanceDB returns ties as it meets them and 40 is more than one over-fetch asks for."""
    rng = np.random.default_rng(1)
    ids = [f"tie-{i:02d}" for i in rng.permutation(40)] + [f"other-{i}" for i in range(60)]
    vectors = np.concatenate([np.tile(np.eye(16)[0], (40, 1)), unit_rows(rng.standard_normal((60, 16)))])
    vectors[40:, 0] = -np.abs(vectors[40:, 0])  # every other item scores below the copies
    write_table(str(tmp_path), vectors.astype(np.float32), ids)
    found = searched(str(tmp_path), np.eye(16, dtype=np.float32)[0], 5)
    assert [hit["id"] for hit in found] == [f"tie-{i:02d}" for i in range(5)]
    assert [hit["score"] for hit in found] == pytest.approx([1.0] * 5)


@pytest.mark.parametrize("ann_index, sub_vectors", [("ivf_rq", None), ("ivf_pq", 8)])
def test_the_ann_index_finds_the_true_neighbours(tmp_path, ann_index, sub_vectors):
    """An ANN index over clustered vectors: recall@10 against the exact search, probing a quarter of
    the partitions with the server's default refine, and fewer found when probing one."""
    vectors = clustered(20_000, 64, clusters=400, seed=2, spread=0.6)
    ids = [f"v{i:05d}" for i in range(len(vectors))]
    write_table(str(tmp_path), vectors, ids, partitions=32, ann_index=ann_index, sub_vectors=sub_vectors)
    queries = clustered(40, 64, clusters=400, seed=2, spread=0.6)  # same centres: queries land among the items

    def recall(probe: int) -> float:
        hits = 0
        for query in queries:
            truth = {i for i, _ in exact_ranking(vectors, ids, query)[:10]}
            hits += len(truth & {hit["id"] for hit in searched(str(tmp_path), query, 10, probe=probe, refine=10)})
        return hits / (10 * len(queries))

    assert recall(8) >= 0.95
    assert recall(1) < recall(8)


def test_a_prefix_is_taken_literally(tmp_path):
    ids = ["a_%'b/1", "a_%'b/2", "axx'b/3", "a_%c/4", "a/5"]
    write_table(str(tmp_path), unit_rows(np.random.default_rng(3).standard_normal((5, 8))).astype(np.float32), ids)
    found = searched(str(tmp_path), np.ones(8, dtype=np.float32), 5, prefix="a_%'b/")
    assert sorted(hit["id"] for hit in found) == ["a_%'b/1", "a_%'b/2"]  # not `_` or `%` as wildcards


def test_a_missing_index_or_another_models_is_refused(tmp_path):
    with pytest.raises(IndexNotFound, match=r"no retrieval index at .*typo .*vljepa index-build"):
        open_table(str(tmp_path / "typo"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match=r"a-file is a file; give a directory"):
        open_table(str(tmp_path / "a-file" / "index"))
    (tmp_path / "not-an-index").mkdir()
    (tmp_path / "not-an-index" / "manifest.json").write_text("{}")  # a feature cache, say
    with pytest.raises(IndexNotFound):
        open_table(str(tmp_path / "not-an-index"))
    write_table(str(tmp_path / "index"), np.eye(4, dtype=np.float32), fingerprint="model-a")
    assert open_table(str(tmp_path / "index"), "model-a").count_rows() == 4
    with pytest.raises(ValueError, match="holds predictions of model model-a, this model is model-b"):
        open_table(str(tmp_path / "index"), "model-b")


def test_s3_without_credentials_is_a_clear_error(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no node role to ask for here
    with pytest.raises(ValueError, match="index s3://bucket/index: S3 needs credentials"):
        check_credentials("s3://bucket/index")
    check_credentials(str(tmp_path))  # a local index needs none
