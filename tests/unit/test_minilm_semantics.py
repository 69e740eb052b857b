import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from model.pooling import masked_mean
from model.tiny_checkpoints import minilm_dir


def test_minilm_y_encoder_has_real_semantics(minilm_model):
    dog, puppy, pasta = minilm_model.embed_texts(
        ["a dog runs across the grass", "a puppy running in a field", "a bowl of pasta on a table"]
    )
    assert dog @ puppy > dog @ pasta + 0.2


def test_isometric_head_keeps_the_pretrained_geometry(minilm_model):
    """Through the head, cosine similarities equal plain MiniLM's mean-pooled ones."""
    texts = ["a red ball bounces", "a blue cube slides left", "a red ball rolls", "pasta"]
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    raw = AutoModel.from_pretrained(minilm_dir()).eval()
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = masked_mean(raw(**encoded).last_hidden_state, encoded["attention_mask"])
    raw_similarity = F.normalize(pooled, dim=-1) @ F.normalize(pooled, dim=-1).t()
    shared = minilm_model.embed_texts(texts)
    torch.testing.assert_close(shared @ shared.t(), raw_similarity, atol=1e-5, rtol=1e-5)
