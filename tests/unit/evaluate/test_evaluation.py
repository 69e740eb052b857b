"""Evaluation metrics on a model whose predictions are known: its own text embeddings."""

import numpy as np
import pytest
import torch

from ops.evaluate import zero_shot as evaluation


def _rows(captions, kinds=None, task="caption", candidates=None, queries=None):
    rows = []
    for i, caption in enumerate(captions):
        rows.append({"task": task, "target": caption, "media_kind": (kinds or ["video"] * len(captions))[i],
                     "s_v_shape": [1, 4], "s_v": np.zeros(4, np.float16).tolist(),
                     "candidates": candidates[i] if candidates else [], "query": queries[i] if queries else ""})
    return rows


def test_perfect_predictions_score_one_and_chance_is_reported(minilm_model, monkeypatch):
    captions = ["a red ball moves left", "a blue cube moves up", "a green triangle moves down", "a red ball moves left"]
    rows = _rows(captions)
    monkeypatch.setattr(evaluation, "predict", lambda model, rs, queries, batch_size=64: model.embed_texts([r["target"] for r in rs]))
    result = evaluation.evaluate(minilm_model, rows)
    assert result["classification"]["top1"] == 1.0 and result["classification"]["chance_top1"] == pytest.approx(1 / 3)
    assert result["retrieval"]["r1"] == 1.0 and result["retrieval"]["chance_r1"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    assert "vqa" not in result and result["num_samples"] == 4


def test_vqa_accuracy_picks_the_nearest_candidate(minilm_model, monkeypatch):
    rows = _rows(["left", "red"], task="vqa", candidates=[["left", "right"], ["blue", "red", "green"]],
                 queries=["Which way?", "What colour?"])
    answers = ["left", "green"]  # the second prediction is wrong on purpose
    monkeypatch.setattr(evaluation, "predict", lambda model, rs, queries, batch_size=64: model.embed_texts(answers))
    result = evaluation.evaluate(minilm_model, rows)
    assert result["vqa"]["accuracy"] == pytest.approx(0.5)
    assert result["vqa"]["chance"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert "classification" not in result


def test_real_predict_path_runs_on_cached_shapes(minilm_model):
    rows = _rows(["a", "b"])
    rows[1]["s_v_shape"], rows[1]["s_v"] = [2, 64], np.ones(128, np.float16).tolist()
    rows[0]["s_v_shape"], rows[0]["s_v"] = [1, 64], np.ones(64, np.float16).tolist()
    out = evaluation.predict(minilm_model, rows, ["", ""])
    assert out.shape == (2, minilm_model.config.embed_dim)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))


def test_a_cache_evaluated_a_row_group_at_a_time_scores_as_the_rows_held_at_once(minilm_model, tmp_path, monkeypatch):
    """`vljepa evaluate` keeps predictions, not S_V: the same numbers as evaluating every row in memory."""
    import ops.cache.parquet as cache_parquet
    from tests.small_cache import SMALL_GROUP_BYTES, write_small_cache

    monkeypatch.setattr(cache_parquet, "ROW_GROUP_BYTES", SMALL_GROUP_BYTES)
    cache, rows = write_small_cache(str(tmp_path / "cache"))

    streamed = evaluation.evaluate_cache(minilm_model, cache.url, "a prompt")
    assert streamed == evaluation.evaluate(minilm_model, evaluation.load_rows(cache.url), "a prompt")
    assert streamed["num_samples"] == 20 and {"classification", "retrieval", "vqa"} <= streamed.keys()
    assert (evaluation.evaluate_cache(minilm_model, cache.url, max_samples=7)
            == evaluation.evaluate(minilm_model, evaluation.load_rows(cache.url, 7)))

    # batches fill across row groups exactly as over the whole list: the same predictions, bit for bit
    predictions = evaluation.Predictions(minilm_model, "a prompt", batch_size=4)
    for chunk in evaluation.row_chunks(cache.url):
        assert len(chunk) <= 3
        predictions.add(chunk)
    captioned, vqa = predictions.finish()
    whole = [r for r in rows if r["task"] == "caption"]
    expected = evaluation.predict(minilm_model, whole, ["a prompt"] * len(whole), batch_size=4)
    assert [r["key"] for r in captioned] == [r["key"] for r in whole] and "s_v" not in captioned[0]
    assert torch.equal(torch.stack([r["predicted"] for r in captioned]), expected)
    assert [r["key"] for r in vqa] == [r["key"] for r in rows if r["task"] == "vqa"]


def test_vqa_encodes_each_distinct_answer_once_and_picks_as_per_row_encoding_did(minilm_model, monkeypatch):
    """Answer sets repeat across questions; scoring encodes each distinct answer once, in one pass
    here, and picks for every row the answer that encoding that row's candidates alone picks."""
    rng = np.random.default_rng(0)
    pool = ["red", "blue", "green", "yellow", "left", "right", "up", "down", "a ball", "a cube"]
    rows = [{"candidates": list(rng.choice(pool, size=int(rng.integers(2, 5)), replace=False)),
             "target": str(rng.choice(pool))} for _ in range(40)]
    for row in rows:
        row["predicted"] = minilm_model.embed_texts([str(rng.choice(pool)) + " " + str(rng.choice(pool))])[0]

    def picked_alone(row):
        return row["candidates"][int((minilm_model.embed_texts(row["candidates"]) @ row["predicted"]).argmax())]

    expected = np.mean([picked_alone(r).lower() == r["target"].lower() for r in rows])
    passes = []
    encode = minilm_model.encode_target
    monkeypatch.setattr(minilm_model, "encode_target", lambda ids, mask: passes.append(len(ids)) or encode(ids, mask))
    result = evaluation.vqa_accuracy(minilm_model, rows)
    assert result["accuracy"] == pytest.approx(expected) and 0 < expected < 1
    assert passes == [len({a for r in rows for a in r["candidates"]})]  # one pass, each answer once
