import warnings

import numpy as np
import torch
import torch.nn.functional as F

from model.tasks import answer_vqa, classify, rank, retrieve


def test_rank_orders_by_cosine():
    queries = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    candidates = F.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.1], [1.0, 1.0]]), dim=-1)
    ranking = rank(queries, candidates)
    assert ranking.indices.tolist() == [[1, 2, 0], [0, 2, 1]]
    assert torch.all(ranking.scores[:, :-1] >= ranking.scores[:, 1:])


def test_tasks_agree_with_direct_embedding_comparisons(minilm_model):
    torch.manual_seed(0)
    size = minilm_model.config.x_encoder.image_size
    s_v = minilm_model.encode_visual(torch.randn(2, 4, 3, size, size))
    labels = ["a red ball", "a blue cube", "a green triangle"]

    ranking = classify(minilm_model, s_v, labels, prompt="What is shown?")
    expected = minilm_model.embed_visual(s_v, ["What is shown?"] * 2) @ minilm_model.embed_texts(labels).t()
    assert ranking.indices[:, 0].tolist() == expected.argmax(dim=-1).tolist()
    assert ranking.indices.shape == (2, 3)

    answers = answer_vqa(minilm_model, s_v, ["what colour?", "what shape?"], [["red", "blue"], ["ball", "cube", "cone"]])
    assert [r.indices.shape[-1] for r in answers] == [2, 3]

    videos = minilm_model.embed_visual(s_v, ["Describe the video."] * 2)
    found = retrieve(minilm_model, videos, ["a red ball"])
    direct = minilm_model.embed_texts(["a red ball"]) @ videos.t()
    assert found.indices[0, 0].item() == direct.argmax().item()


def test_embed_clips_is_the_direct_forward_without_autograd(minilm_model):
    from model.tasks import embed_clips

    torch.manual_seed(1)
    size = minilm_model.config.x_encoder.image_size
    frames = torch.randn(3, 4, 3, size, size)
    queries = ["What is shown?", "", "what colour?"]
    served = embed_clips(minilm_model, frames, queries, torch.device("cpu"))
    with torch.no_grad():
        direct = minilm_model.embed_visual(minilm_model.encode_visual(frames), queries)
    assert served.dtype == np.float32 and served.shape == tuple(direct.shape)
    assert np.allclose(served, direct.numpy(), atol=1e-5)
    assert np.allclose(np.linalg.norm(served, axis=-1), 1.0, atol=1e-5)


def test_device_autocast_is_bf16_on_a_gpu_only():
    from model.precision import device_autocast

    with warnings.catch_warnings():  # torch switches it off itself (with a warning) where CUDA is absent
        warnings.simplefilter("ignore", UserWarning)
        gpu = device_autocast(torch.device("cuda"))
    assert gpu.device == "cuda" and gpu.fast_dtype == torch.bfloat16
    assert gpu._enabled == torch.cuda.is_available()
    assert not device_autocast(torch.device("cuda"), bf16=False)._enabled
    cpu = device_autocast(torch.device("cpu"))
    assert not cpu._enabled
    with cpu:  # float32 stays float32 on a CPU
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_texts_are_encoded_in_batches_longest_first_and_come_back_in_order(minilm_model, monkeypatch):
    texts = ["a", "a red ball moves left across the table", "up", "a blue cube", "", "a green triangle moves down"]
    alone = torch.cat([minilm_model.embed_texts([text]) for text in texts])
    passes = []
    encode = minilm_model.encode_target
    monkeypatch.setattr(minilm_model, "encode_target", lambda ids, mask: passes.append(ids.shape) or encode(ids, mask))
    batched = minilm_model.embed_texts(texts, batch_size=4)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)
    assert [shape[0] for shape in passes] == [4, 2] and passes[0][1] > passes[1][1]  # long texts pad together
    assert minilm_model.embed_texts([]).shape == (0, minilm_model.config.embed_dim)


def test_vqa_answers_rank_as_each_sample_encoded_alone(minilm_model):
    torch.manual_seed(2)
    size = minilm_model.config.x_encoder.image_size
    s_v = minilm_model.encode_visual(torch.randn(3, 4, 3, size, size))
    candidates = [["red", "blue"], ["blue", "a ball", "red"], ["left", "red"]]
    answers = answer_vqa(minilm_model, s_v, ["what colour?", "what is it?", "which way?"], candidates)
    predicted = minilm_model.embed_visual(s_v, ["what colour?", "what is it?", "which way?"])
    for ranking, options, row in zip(answers, candidates, predicted):
        expected = rank(row[None], minilm_model.embed_texts(options))
        assert ranking.indices.tolist() == expected.indices.tolist()
        torch.testing.assert_close(ranking.scores, expected.scores, atol=1e-5, rtol=1e-5)
