import math

import numpy as np
import pyarrow as pa
import pytest

from ops.train.collate import Collate, pad_visual, query_for, select_rows
from pipelines.train.config import CAPTION_PROMPT, TrainConfig
from pipelines.train.loop import lr_factor


def test_schedules_warm_up_then_hold_or_anneal():
    pretrain = TrainConfig(stage="pretrain-video", cache="c", out="o", steps=100, warmup_steps=10)
    sft = TrainConfig(stage="sft", cache="c", out="o", steps=100, warmup_steps=10)
    assert lr_factor(0, pretrain) == pytest.approx(0.1) and lr_factor(9, pretrain) == pytest.approx(1.0)
    assert lr_factor(50, pretrain) == lr_factor(99, pretrain) == 1.0
    assert lr_factor(10, sft) == pytest.approx(1.0)
    assert lr_factor(55, sft) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(100, sft) == pytest.approx(0.0, abs=1e-9)


def test_config_validation_gives_clear_errors():
    with pytest.raises(ValueError, match="unknown stage"):
        TrainConfig(stage="nope", cache="c", out="o").validate()
    with pytest.raises(ValueError, match="negatives"):
        TrainConfig(stage="sft", cache="c", out="o", batch_size=1).validate()
    with pytest.raises(ValueError, match="replay-cache"):
        TrainConfig(stage="sft", cache="c", out="o", replay_weight=0.2).validate()


def test_which_rows_get_which_query():
    assert query_for("vqa", "Which way?", CAPTION_PROMPT, replay=False) == "Which way?"
    assert query_for("caption", "", CAPTION_PROMPT, replay=False) == CAPTION_PROMPT
    assert query_for("vqa", "Which way?", CAPTION_PROMPT, replay=True) == ""


def test_pad_visual_masks_the_padding():
    s_v, mask = pad_visual([np.ones((2, 3), np.float16), np.full((4, 3), 2, np.float16)])
    assert s_v.shape == (2, 4, 3) and mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert s_v[0, 2:].abs().sum() == 0 and s_v[1, 3, 0] == 2


def test_collate_tokenises_and_drops_queries_of_query_free_rows(tiny_model):
    batch = {
        "s_v": np.array([np.zeros(8, np.float16), np.zeros(12, np.float16)], dtype=object),
        "s_v_shape": np.array([[2, 4], [3, 4]]),
        "target": np.array(["left", "a red ball"]), "query": np.array(["Which way?", ""]),
        "task": np.array(["vqa", "caption"]), "replay": np.array([False, True]),
    }
    collate = Collate(tiny_model.target_tokenizer, tiny_model.query_tokenizer, 32, 32, use_query=True,
                      caption_prompt=CAPTION_PROMPT)
    out = collate(batch)
    assert out["s_v"].shape == (2, 3, 4) and out["visual_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert out["query_mask"][0].sum() > 0 and out["query_mask"][1].sum() == 0  # replayed: no query at all
    assert out["target_ids"].shape[0] == 2
    no_query = Collate(tiny_model.target_tokenizer, tiny_model.query_tokenizer, 32, 32, use_query=False)(batch)
    assert "query_ids" not in no_query


def test_select_rows_keeps_the_stage_rows_and_tags_replay():
    table = pa.table({"media_kind": ["video", "image", "video"], "task": ["caption", "caption", "vqa"],
                      "s_v": [[1.0], [2.0], [3.0]]})
    selected = select_rows(table, ["video"], ["caption"], replay=True)
    assert selected.num_rows == 1 and selected["s_v"].to_pylist() == [[1.0]]
    assert selected["replay"].to_pylist() == [True]


def test_a_text_only_decoder_run_reads_no_features_of_its_training_cache():
    # so only its eval cache (CIDEr from Ŝ_Y) is checked against the model's x-encoder
    from pipelines.decode.config import DecoderTrainConfig

    text = DecoderTrainConfig(model="m", cache="train", eval_cache="eval", out="run")
    predicted = DecoderTrainConfig(model="m", cache="train", eval_cache="eval", out="run", mode="predicted")
    assert text.caches() == predicted.caches() == ["train", "eval"]
    assert text.feature_caches() == ["eval"]
    assert predicted.feature_caches() == ["train", "eval"]
