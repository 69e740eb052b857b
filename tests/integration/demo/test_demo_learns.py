"""`make demo`'s own schedule on the sample data: the trained model learns, the untrained does not.

This runs the whole demo (sample data -> cache -> evaluate untrained -> train -> evaluate -> decoder
-> stream -> serve) through
`pipelines.demo.demo.main`, so it also keeps the demo working at every commit.
"""

import json

from pipelines.demo import demo


def test_demo_schedule_beats_chance_threefold_on_held_out_combinations(ray_instance, tmp_path):
    assert demo.main(["--out", str(tmp_path / "demo")]) == 0
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    untrained, trained = results["untrained"], results["trained"]
    print(json.dumps(results, indent=2))

    chance_top1 = trained["classification"]["chance_top1"]
    chance_r1 = trained["retrieval"]["chance_r1"]
    assert trained["classification"]["top1"] >= 3 * chance_top1
    assert trained["retrieval"]["r1"] >= 3 * chance_r1
    # untrained: the predictor is random, so it sits near chance
    assert untrained["classification"]["top1"] < 2.5 * chance_top1
    assert untrained["retrieval"]["r1"] < 2.5 * chance_r1
    assert (tmp_path / "demo" / "run" / "model" / "vljepa.json").exists()
    for run in ("run", "decoder-text", "decoder"):  # each training run's curves
        assert (tmp_path / "demo" / run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # the y-encoder's hard-negative text test (paper §4.6) ran on the sample data's 168 triplets, both models
    for model in (untrained, trained):
        assert model["text_triplets"]["num_triplets"] == 168
        assert set(model["text_triplets"]["by_category"]) == {"colour", "shape", "motion"}
    # captions decoded from predicted embeddings beat decoding random embeddings on held-out clips
    for captioning in (results["captioning_text_only"], results["captioning"]):  # before and after the fine-tune
        assert captioning["cider_true"] > captioning["cider_predicted"] > 1.3 * captioning["cider_random"]
    assert (tmp_path / "demo" / "decoder" / "model" / "y_decoder" / "y_decoder.json").exists()
    # steps 8-9 stream and serve with the decoder that reads held-out predictions better
    fine_tune_helps = results["captioning"]["cider_predicted"] > results["captioning_text_only"]["cider_predicted"]
    assert results["served_decoder"] == ("decoder/model" if fine_tune_helps else "decoder-text/model")
    assert (tmp_path / "demo" / results["served_decoder"] / "y_decoder" / "y_decoder.json").exists()
    # step 9: the retrieval index holds every captioned video of the two caches, predicted once; the
    # re-run predicts none; step 10 serves it and finds videos by text
    index = results["index"]
    assert index["rows"] == index["predicted"] > 0 and index["rebuilt_predicted"] == 0
    from ops.retrieval.table import open_table

    held = set(open_table(str(tmp_path / "demo" / "index")).to_arrow()["id"].to_pylist())
    found = index["served_retrieval"]
    assert len(found) == 3 and {hit["id"] for hit in found} <= held
    assert [hit["score"] for hit in found] == sorted((hit["score"] for hit in found), reverse=True)
    assert {hit["id"].split("/")[0] for hit in found} <= {"eval", "train-clips"}
