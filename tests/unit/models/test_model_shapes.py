import torch

from model.build import build_skeleton
from model.parameters import component_counts
from model.presets import get_preset


def test_component_shapes(tiny_model, tiny_config):
    batch, frames, size = 2, tiny_config.x_encoder.num_frames, tiny_config.x_encoder.image_size
    s_v = tiny_model.encode_visual(torch.randn(batch, frames, 3, size, size))
    n_tokens = tiny_model.x_encoder.num_tokens(frames, size)
    assert s_v.shape == (batch, n_tokens, tiny_model.x_encoder.hidden_size)

    query_ids, query_mask = tiny_model.tokenize_queries(["what moves?", "describe the clip please"])
    assert query_ids.shape == query_mask.shape and query_ids.shape[0] == batch
    predicted = tiny_model.predict(s_v, query_ids, query_mask)
    assert predicted.shape == (batch, tiny_config.embed_dim)
    assert tiny_model.predict(s_v).shape == (batch, tiny_config.embed_dim)  # query-free pretraining

    target_ids, target_mask = tiny_model.tokenize_targets(["a red ball", "a blue cube slides left"])
    assert tiny_model.encode_target(target_ids, target_mask).shape == (batch, tiny_config.embed_dim)


def test_image_is_duplicated_over_the_tubelet(tiny_model, tiny_config):
    size = tiny_config.x_encoder.image_size
    image = torch.randn(2, 3, size, size)
    tubelet = tiny_model.x_encoder.tubelet_size
    from_image = tiny_model.encode_visual(image)
    from_one_frame = tiny_model.encode_visual(image.unsqueeze(1))
    from_duplicates = tiny_model.encode_visual(image.unsqueeze(1).repeat(1, tubelet, 1, 1, 1))
    assert from_image.shape == (2, tiny_model.x_encoder.num_tokens(1, size), tiny_model.x_encoder.hidden_size)
    torch.testing.assert_close(from_image, from_duplicates)
    torch.testing.assert_close(from_one_frame, from_duplicates)
    # and a different second frame really would change the features
    other = torch.stack([image, torch.randn_like(image)], dim=1)
    assert not torch.allclose(tiny_model.encode_visual(other), from_duplicates)


def test_paper_parameter_counts_match_the_paper():
    counts = component_counts(build_skeleton(get_preset("paper")))
    x, predictor, y = counts["x_encoder"], counts["predictor"], counts["y_encoder"]
    # paper §3.1: ViT-L 304M frozen; predictor 490M trainable; EmbeddingGemma ~300M
    assert x["trainable"] == 0 and 295e6 < x["frozen"] < 310e6
    assert 480e6 < predictor["trainable"] < 500e6
    assert predictor["frozen"] == 128256 * 2048  # Llama's token embeddings, frozen
    assert 295e6 < y["total"] < 310e6 and y["frozen"] == 0
    assert counts["total"]["total"] == x["total"] + predictor["total"] + y["total"] + 1  # + logit scale


def test_paper_random_has_every_layer_of_the_papers_checkpoints():
    from transformers import AutoModel

    from model.hub_configs import EMBEDDINGGEMMA_300M, LLAMA_3_2_1B, VJEPA2_VITL_FPC64_256, architecture_config
    from model.tiny_checkpoints import paper_shaped_configs

    shaped = paper_shaped_configs(vocab_size=30522, pad_id=0, bos_id=101, eos_id=102)

    def layer_parameters(config) -> int:  # everything but the token table, which follows the tokenizer
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        return sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)

    for name, checkpoint in (("vjepa2", VJEPA2_VITL_FPC64_256), ("llama", LLAMA_3_2_1B),
                             ("gemma3", EMBEDDINGGEMMA_300M)):
        real = architecture_config(checkpoint)
        assert layer_parameters(shaped[name]) == layer_parameters(real) > 1e8, name
    assert shaped["llama"].vocab_size == shaped["gemma3"].vocab_size == 30522
    llama = shaped["llama"]
    assert (llama.pad_token_id, llama.bos_token_id, llama.eos_token_id) == (0, 101, 102)
