"""The Y-decoder: token layout, training noise, learning, decoding (greedy and beam), saving."""

from __future__ import annotations

import pytest
import torch

from model.export import load_model
from model.presets import y_decoder_preset
from model.y_decoder import YDecoder, add_embedding_noise
from model.y_decoder_export import decoder_dir_of, load_y_decoder
from tests.conftest import CAPTIONS


def test_targets_end_with_eos_and_padding_is_masked(minilm_config):
    decoder = YDecoder.from_pretrained(y_decoder_preset(minilm_config))
    ids, mask = decoder.tokenize_targets(["a red ball moves left", "a cube"])
    lengths = mask.sum(dim=1)
    assert lengths[0] > lengths[1]
    for row, length in zip(ids, lengths):
        assert row[length - 1] == decoder.eos_id
        assert (row[length:] == decoder.pad_id).all()
    long_ids, _ = decoder.tokenize_targets(["word " * 200])
    assert long_ids.shape[1] == decoder.config.max_tokens and long_ids[0, -1] == decoder.eos_id


def test_noise_has_the_configured_norm():
    clean = torch.nn.functional.normalize(torch.randn(2000, 384), dim=-1)
    noisy = add_embedding_noise(clean, 0.3, torch.Generator().manual_seed(0))
    assert (noisy - clean).norm(dim=-1).mean() == pytest.approx(0.3, rel=0.05)
    assert torch.equal(add_embedding_noise(clean, 0.0), clean)


def test_decoder_reads_captions_back_and_other_directions_decode_differently(captioning_model_dir):
    model = load_model(captioning_model_dir).eval()
    decoder = load_y_decoder(captioning_model_dir).eval()  # from disk: the saving round trip
    embeddings = model.embed_texts(CAPTIONS)
    assert decoder.generate(embeddings) == CAPTIONS
    assert decoder.generate(embeddings, num_beams=3) == CAPTIONS
    # Fitted to these four captions only, the decoder writes one of them for any direction; that the
    # embedding steers it shows in random directions decoding to different captions, not one for all.
    random = torch.nn.functional.normalize(torch.randn(8, embeddings.shape[1], generator=torch.Generator().manual_seed(1)), dim=-1)
    assert len(set(decoder.generate(random))) > 1


def test_untrained_decoder_loss_drops_when_it_learns(minilm_config):
    torch.manual_seed(0)
    decoder = YDecoder.from_pretrained(y_decoder_preset(minilm_config))
    embeddings = torch.randn(2, 384)
    ids, mask = decoder.tokenize_targets(CAPTIONS[:2])
    first = float(decoder(embeddings, ids, mask).detach())
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=3e-3)
    for _ in range(20):
        loss = decoder(embeddings, ids, mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert float(loss.detach()) < first / 2


def test_a_directory_without_decoder_says_how_to_get_one(tmp_path):
    assert decoder_dir_of(tmp_path) is None
    with pytest.raises(ValueError, match="train-decoder"):
        load_y_decoder(tmp_path)
