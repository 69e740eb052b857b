"""Evaluation metrics on a model whose predictions are known: its own text embeddings."""

import numpy as np
import pytest
import torch

from ops import evaluation


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
