"""The visual replica predicts a feature cache's rows for the retrieval index in batches: rows of
one token count together, `max_batch_size` at a time, each as the model predicts it alone."""

import asyncio

import numpy as np
import torch

from model.tasks import embed_features
from pipelines.serve_deployments import VisualPredictor


def test_cached_features_are_predicted_in_batches_as_each_alone(captioning_model_dir, monkeypatch):
    replica = VisualPredictor.func_or_class(str(captioning_model_dir), max_batch_size=4)
    width = replica.model.x_encoder.hidden_size
    rng = np.random.default_rng(0)
    # as a cache stores them (float16); rows 0, 3 and 6 of 4 tokens (images), the others of 8 (clips)
    features = [rng.standard_normal((8 if i % 3 else 4, width)).astype(np.float16) for i in range(7)]
    alone = [embed_features(replica.model, torch.from_numpy(f.astype(np.float32))[None], [replica.caption_prompt],
                            replica.device)[0] for f in features]
    batches = []
    embed_visual = replica.model.embed_visual
    monkeypatch.setattr(replica.model, "embed_visual",
                        lambda s_v, queries, *rest: batches.append(tuple(s_v.shape[:2])) or embed_visual(s_v, queries, *rest))
    predicted = asyncio.run(replica.predict_cached(features))
    assert len(predicted) == len(features)
    for got, expected in zip(predicted, alone):
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    # one batch per token count, none padded, none over max_batch_size
    assert sorted(batches) == [(3, 4), (4, 8)]
