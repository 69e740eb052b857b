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


def test_rows_go_a_few_bounded_calls_at_a_time_read_a_group_at_a_time(captioning_model_dir):
    """The ingress's index fill: the visual replica's own predict_cached (in-process), rows_per_call
    rows a call, never more than max_in_flight calls out, row groups pulled only as calls go out."""
    from pipelines.cached_predictions import predict_in_calls

    replica = VisualPredictor.func_or_class(str(captioning_model_dir), max_batch_size=4)
    rng = np.random.default_rng(1)
    width = replica.model.x_encoder.hidden_size
    groups = [[{"key": f"k{g}-{i}", "s_v_shape": [8, width],
                "s_v": rng.standard_normal(8 * width).astype(np.float16)} for i in range(3)] for g in range(7)]
    pulled, out, calls, most_out = [], 0, [], 0

    def row_groups():
        for index, group in enumerate(groups):
            pulled.append((index, out))  # calls out when this group was asked for
            yield group

    async def answer(arrays):
        nonlocal out
        await asyncio.sleep(0.01)  # a call takes a while: the next ones queue behind it
        try:
            return await replica.predict_cached(arrays)
        finally:
            out -= 1

    def predict(arrays):  # as a handle's .remote: the call is out once made
        nonlocal out, most_out
        out += 1
        most_out = max(most_out, out)
        calls.append(len(arrays))
        return asyncio.ensure_future(answer(arrays))

    predicted = asyncio.run(predict_in_calls(row_groups(), lambda row: (row["key"], {"k": row["key"]}), predict,
                                             rows_per_call=4, max_in_flight=2))
    rows = [row for group in groups for row in group]
    assert [item_id for item_id, _, _ in predicted] == [row["key"] for row in rows]
    assert all(meta == {"k": item_id} for item_id, _, meta in predicted)
    alone = asyncio.run(replica.predict_cached([r["s_v"].reshape(8, width) for r in rows]))
    for (_, embedding, _), expected in zip(predicted, alone):
        np.testing.assert_allclose(embedding, expected, atol=1e-5, rtol=1e-5)
    assert calls == [4, 4, 4, 4, 4, 1] and most_out == 2
    assert all(calls_out < 2 for _, calls_out in pulled)  # a group is read only once a call has come back
