import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from model.predictor import Predictor


def _visual(model, batch=2):
    torch.manual_seed(1)
    size = model.config.x_encoder.image_size
    return model.encode_visual(torch.randn(batch, 4, 3, size, size))


def test_attention_is_bidirectional(tiny_model):
    """Visual tokens come first; a change in a later query token must reach them."""
    s_v = _visual(tiny_model)
    ids, mask = tiny_model.tokenize_queries(["is the ball red?", "is the ball red?"])
    changed = ids.clone()
    changed[:, 2] = (changed[:, 2] + 7) % tiny_model.predictor.llm.config.vocab_size
    n_visual = s_v.shape[1]
    with torch.no_grad():
        before, _ = tiny_model.predictor.encode_sequence(s_v, ids, mask)
        after, _ = tiny_model.predictor.encode_sequence(s_v, changed, mask)
    assert not torch.allclose(before[:, :n_visual], after[:, :n_visual], atol=1e-6)

    # Control: the same weights run causally leave the visual positions untouched, so the
    # assertion above really does detect bidirectionality.
    tiny_model.predictor.llm.config.is_causal = True
    try:
        with torch.no_grad():
            causal_before, _ = tiny_model.predictor.encode_sequence(s_v, ids, mask)
            causal_after, _ = tiny_model.predictor.encode_sequence(s_v, changed, mask)
    finally:
        tiny_model.predictor.llm.config.is_causal = False
    torch.testing.assert_close(causal_before[:, :n_visual], causal_after[:, :n_visual])


def test_more_padding_does_not_change_the_prediction(tiny_model):
    s_v = _visual(tiny_model)
    ids, mask = tiny_model.tokenize_queries(["short", "a somewhat longer question here?"])
    pad_id = tiny_model.query_tokenizer.pad_token_id
    extra = 9
    padded_ids = torch.cat([ids, torch.full((ids.shape[0], extra), pad_id)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(mask.shape[0], extra, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        base = tiny_model.predict(s_v, ids, mask)
        padded = tiny_model.predict(s_v, padded_ids, padded_mask)
    torch.testing.assert_close(base, padded, atol=1e-5, rtol=1e-5)
    assert mask[0].sum() < mask[1].sum()  # the short query really was padded already


def test_predictor_keeps_the_requested_llama_layers(tmp_path):
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    start, keep = 2, 3
    predictor = Predictor.from_pretrained(str(tmp_path), layer_start=start, num_layers=keep,
                                          vision_dim=16, embed_dim=24)
    checkpoint = load_file(tmp_path / "model.safetensors")
    assert len(predictor.llm.layers) == keep and predictor.llm.config.num_hidden_layers == keep
    for index, layer in enumerate(predictor.llm.layers):
        weights = layer.state_dict()
        assert weights, "layer has no weights"
        for name, tensor in weights.items():
            torch.testing.assert_close(tensor, checkpoint[f"model.layers.{start + index}.{name}"], rtol=0, atol=0)
        assert layer.self_attn.layer_idx == index
    torch.testing.assert_close(predictor.llm.embed_tokens.weight, checkpoint["model.embed_tokens.weight"])
    torch.testing.assert_close(predictor.llm.norm.weight, checkpoint["model.norm.weight"])
    assert not predictor.llm.embed_tokens.weight.requires_grad

    with pytest.raises(ValueError, match="cannot keep layers"):
        Predictor.from_pretrained(str(tmp_path), layer_start=4, num_layers=3, vision_dim=16, embed_dim=24)


def test_padded_visual_tokens_change_nothing(tiny_model):
    """An image's S_V padded to a clip's length, with its visual mask, predicts what it did alone."""
    size = tiny_model.config.x_encoder.image_size
    image_s_v = tiny_model.encode_visual(torch.randn(1, 3, size, size))  # (1, 16, D)
    padded = torch.cat([image_s_v, torch.randn(1, 48, image_s_v.shape[-1])], dim=1)
    visual_mask = torch.cat([torch.ones(1, 16), torch.zeros(1, 48)], dim=1)
    ids, mask = tiny_model.tokenize_queries(["what is it?"])
    with torch.no_grad():
        alone = tiny_model.predict(image_s_v, ids, mask)
        masked = tiny_model.predict(padded, ids, mask, visual_mask)
        unmasked = tiny_model.predict(padded, ids, mask)
    torch.testing.assert_close(alone, masked, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alone, unmasked, atol=1e-4)
