"""`vljepa index-build` on the test session's Ray instance, into real LanceDB tables on disk and on
S3 (moto's server on 127.0.0.1): the table holds every captioned video of its caches as the model
predicts it; re-runs predict only what is new or changed, drop what no cache lists, and leave
items added over HTTP alone; an index of another model is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from model.export import load_model
from ops.evaluate.zero_shot import load_rows
from ops.retrieval.table import MODEL_KEY, TABLE_NAME, model_fingerprint, open_table, rows_table
from ops.train.collate import pad_visual, row_features
from pipelines.retrieval import index_build
from pipelines.retrieval.index_build import IndexBuildConfig
from tests.retrieval_tables import exact_ranking
from tests.unit.retrieval.test_retrieval_table import searched


def captioned(cache) -> list[dict]:
    return [r for r in load_rows(str(cache)) if r["media_kind"] == "video" and r["task"] == "caption"]


def build(model, index, *caches, **settings):
    return index_build.run(IndexBuildConfig(model=str(model), index=str(index), caches=[str(c) for c in caches],
                                            **settings))


def table_rows(index) -> dict[str, dict]:
    return {row["id"]: row for row in open_table(str(index)).to_arrow().to_pylist()}


def test_the_index_holds_every_captioned_video_as_the_model_predicts_it(ray_instance, caches, captioning_model_dir,
                                                                       tmp_path):
    result = build(captioning_model_dir, tmp_path / "index", caches / "eval", caches / "train")
    rows = [{**r, "id": f"{name}/{r['shard']}/{r['key']}"} for name in ("eval", "train") for r in captioned(caches / name)]
    assert result.rows == result.predicted == result.added == len(rows) and result.ann_index is None  # few rows: exact
    held = table_rows(tmp_path / "index")
    assert set(held) == {r["id"] for r in rows}
    assert all(held[r["id"]]["caption"] == r["target"] and held[r["id"]]["source"] == r["id"].split("/")[0]
               for r in rows)
    model = load_model(captioning_model_dir).eval()
    s_v, mask = pad_visual(row_features([r["s_v_shape"] for r in rows], [r["s_v"] for r in rows]))
    with torch.no_grad():
        predicted = model.embed_visual(s_v, [""] * len(rows), mask).numpy()  # the captioning prompt is ""
    stored = np.stack([np.asarray(held[r["id"]]["vector"], dtype=np.float32) for r in rows])
    np.testing.assert_allclose(stored, predicted, atol=2e-3)  # float16, as the table keeps them
    table = open_table(str(tmp_path / "index"), model_fingerprint(captioning_model_dir))
    assert table.schema.metadata[MODEL_KEY.encode()].decode() == model_fingerprint(captioning_model_dir)
    # a text query ranks the videos as one numpy product over the stored vectors does
    query = model.embed_texts([rows[0]["target"]])[0].numpy()
    expected = exact_ranking(stored, [r["id"] for r in rows], query)[:5]
    assert [hit["id"] for hit in searched(str(tmp_path / "index"), query, 5)] == [i for i, _ in expected]


def test_a_rebuild_predicts_only_what_changed_and_leaves_http_items_alone(ray_instance, caches, captioning_model_dir,
                                                                        tmp_path):
    index, model = tmp_path / "index", captioning_model_dir
    evals, trains = len(captioned(caches / "eval")), len(captioned(caches / "train"))
    first = build(model, index, caches / "eval")
    assert (first.predicted, first.rows) == (evals, evals)
    eval_vectors = {i: r["vector"] for i, r in table_rows(index).items()}

    # an item a client added over HTTP: no source cache
    table = open_table(str(index))
    table.add(rows_table(table.schema, ["upload/1"], ["image"], [None], [None], np.ones((1, 384))))

    grown = build(model, index, caches / "eval", caches / "train")
    assert (grown.predicted, grown.added, grown.unchanged, grown.dropped) == (trains, trains, evals, 0)
    assert {i: r["vector"] for i, r in table_rows(index).items() if i.startswith("eval/")} == eval_vectors

    # a cache rebuilt with another caption for one video: that one is predicted again and replaced
    rebuilt = tmp_path / "rebuilt" / "train"
    shutil.copytree(caches / "train", rebuilt)
    shard = sorted(rebuilt.glob("video-*.parquet"))[0]
    data = pq.read_table(shard)
    targets = data["target"].to_pylist()
    changed = next(i for i, (kind, task) in enumerate(zip(data["media_kind"].to_pylist(), data["task"].to_pylist()))
                   if kind == "video" and task == "caption")
    targets[changed] = "a caption written again"
    pq.write_table(data.set_column(data.schema.get_field_index("target"), "target", [targets]), shard)
    replaced = build(model, index, caches / "eval", rebuilt)
    assert (replaced.predicted, replaced.replaced, replaced.rows) == (1, 1, evals + trains + 1)
    changed_id = f"train/{shard.stem}/{data['key'][changed].as_py()}"
    assert table_rows(index)[changed_id]["caption"] == "a caption written again"

    # nothing changed: nothing predicted, nothing written
    same = build(model, index, caches / "eval", rebuilt)
    assert (same.predicted, same.dropped, same.version) == (0, 0, replaced.version)

    # a cache no longer listed: its items go, the HTTP item stays
    shrunk = build(model, index, caches / "eval")
    assert (shrunk.dropped, shrunk.rows) == (trains, evals + 1)
    assert {i for i in table_rows(index) if not i.startswith("eval/")} == {"upload/1"}


def test_an_index_of_another_model_is_refused(ray_instance, caches, captioning_model_dir, tmp_path):
    from pipelines.models import export

    build(captioning_model_dir, tmp_path / "index")  # no cache: an empty index, for HTTP adds
    assert open_table(str(tmp_path / "index")).count_rows() == 0
    other = tmp_path / "other-model"
    assert export.main(["--preset", "minilm", "--out", str(other), "--seed", "1"]) == 0
    with pytest.raises(ValueError, match=f"holds predictions of model {model_fingerprint(captioning_model_dir)}, "
                                         f"this model is {model_fingerprint(other)}"):
        build(other, tmp_path / "index", caches / "eval")


def test_an_index_on_s3_equals_one_on_disk(ray_instance, s3_endpoint, caches, captioning_model_dir, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem()
    if not fs.exists("vljepa-index"):
        fs.mkdir("vljepa-index")
    on_s3 = build(captioning_model_dir, "s3://vljepa-index/eval", caches / "eval")
    local = build(captioning_model_dir, tmp_path / "index", caches / "eval")
    assert on_s3.rows == local.rows > 0 and fs.exists(f"vljepa-index/eval/{TABLE_NAME}.lance")
    query = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    assert searched("s3://vljepa-index/eval", query, 5) == searched(str(tmp_path / "index"), query, 5)
