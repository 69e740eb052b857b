import logging

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


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_loading_the_pretrained_encoder_reports_only_real_problems():
    """MiniLM's checkpoint carries a [CLS] pooler the y-encoder drops on purpose: loading it logs
    no warning table (it used to, at every load), while a weight that really did not load is named."""
    from model.y_encoder import YEncoder, warn_unloaded

    records = Records()
    transformers_logger = logging.getLogger("transformers")  # it does not propagate to the root
    transformers_logger.addHandler(records)
    try:
        encoder = YEncoder.from_pretrained(minilm_dir(), embed_dim=32)
    finally:
        transformers_logger.removeHandler(records)
    assert encoder.text_model.pooler is None
    assert not [m for m in records.messages if "LOAD REPORT" in m or "not sharded" in m], records.messages

    info = {"missing_keys": ["encoder.layer.0.attention.self.query.weight"], "mismatched_keys": [],
            "unexpected_keys": ["pooler.dense.weight", "lm_head.weight"]}
    assert warn_unloaded("ckpt", info, expected_unexpected=("pooler.",)) == [
        "missing encoder.layer.0.attention.self.query.weight", "unexpected lm_head.weight"]
