"""Which embedding each row of a Y-decoder batch trains on: S_Y, Ŝ_Y, or a per-row mix."""

import numpy as np
import pytest
import torch

from pipelines.decode.config import DecoderTrainConfig
from pipelines.decode.loop import EmbeddingSource

CAPTIONS = ["a red ball moves left", "a blue cube moves up", "a green triangle moves down", "a yellow ball"] * 8


def _batch(rows: int) -> dict:
    rng = np.random.default_rng(0)
    return {"target": np.array(CAPTIONS[:rows]), "s_v_shape": np.array([[2, 64]] * rows),
            "s_v": [rng.standard_normal(128).astype(np.float16) for _ in range(rows)]}


def _is_row_of(rows: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return torch.isclose(rows, reference, atol=1e-5).all(dim=-1)


def test_text_mix_sends_that_fraction_of_rows_to_the_captions_embeddings(minilm_model):
    batch, device = _batch(32), torch.device("cpu")
    exact = minilm_model.embed_texts(list(batch["target"]))
    predicted = EmbeddingSource(minilm_model, "predicted", "Describe the video.")(batch, device)
    assert not _is_row_of(predicted, exact).any()  # the two sources differ on every row
    assert torch.equal(EmbeddingSource(minilm_model, "text", "")(batch, device), exact)

    torch.manual_seed(0)
    mixed = EmbeddingSource(minilm_model, "predicted", "Describe the video.", text_mix=0.5)(batch, device)
    from_text, from_prediction = _is_row_of(mixed, exact), _is_row_of(mixed, predicted)
    assert bool((from_text ^ from_prediction).all())  # each row is one or the other, whole
    assert 8 <= int(from_text.sum()) <= 24  # about half of 32 (binomial: outside this range p < 0.01)
    torch.manual_seed(0)
    again = EmbeddingSource(minilm_model, "predicted", "Describe the video.", text_mix=0.5)(batch, device)
    assert torch.equal(mixed, again)  # the draw follows torch's seeded generator, as a resumed run needs

    everything = EmbeddingSource(minilm_model, "predicted", "Describe the video.", text_mix=1.0)(batch, device)
    assert bool(_is_row_of(everything, exact).all())


def test_text_mix_is_checked():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DecoderTrainConfig(model="m", cache="c", out="o", mode="predicted", text_mix=1.5).validate()
    with pytest.raises(ValueError, match="--mode predicted"):
        DecoderTrainConfig(model="m", cache="c", out="o", mode="text", text_mix=0.5).validate()
    DecoderTrainConfig(model="m", cache="c", out="o", mode="predicted", text_mix=0.5).validate()
