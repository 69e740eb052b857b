"""The y-encoder's text-only hard-negative test (paper §4.6): reading triplet files, scoring them
with a real y-encoder, the sample data's triplets, and `vljepa evaluate --text-triplets`."""

import json

import pytest

from ops.data.sample_data import sample_triplets
from ops.data.scenes import COLOURS, MOTIONS, SHAPES, all_scenes
from ops.evaluate.text_triplets import TextTriplet, read_triplet_files, read_triplets, triplet_accuracy, write_triplets
from pipelines.evaluate import evaluate
from pipelines.models import export


def test_triplet_files_are_read_as_jsonl_a_json_list_or_an_object_of_records(tmp_path):
    triplets = [TextTriplet("a red ball", "a ball that is red", "a blue ball", "colour"),
                TextTriplet("a cube", "a box", "a ball", "shape")]
    write_triplets(str(tmp_path / "t.jsonl"), triplets)
    assert read_triplets(str(tmp_path / "t.jsonl")) == triplets

    records = {"0": {"caption": "a cat", "caption2": "a kitten", "negative_caption": "a dog"}}
    (tmp_path / "keyed.json").write_text(json.dumps(records))
    fields = ("caption", "caption2", "negative_caption")
    assert read_triplets(str(tmp_path / "keyed.json"), fields) == [TextTriplet("a cat", "a kitten", "a dog")]
    (tmp_path / "list.json").write_text(json.dumps(list(records.values())))
    assert read_triplets(str(tmp_path / "list.json"), fields) == [TextTriplet("a cat", "a kitten", "a dog")]


@pytest.mark.parametrize("content, message", [
    ('{"p1": "a", "p2": "b", "n": "c"}\n{"p1": "a", "p2": "b"}\n', "line 2 has no field 'n'"),
    ('{"p1": "a", "p2": "b", "n": "c"}\n{"p1": "a",\n', "line 2 is not JSON"),
    ('{"p1": "a", "p2": "", "n": "c"}\n', "must be non-empty strings"),
    ('[["a", "b", "c"]]', "a triplet is a JSON object"),
    ("\n\n", "holds no triplets"),
])
def test_a_bad_triplet_file_is_refused_naming_where(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_triplets(str(path))


def test_a_triplet_is_right_only_when_the_two_positives_are_the_closest_pair(minilm_model):
    same = TextTriplet("a red ball", "a red ball", "a blue cube moves up", "p2 is p1")
    negative_is_p1 = TextTriplet("a red ball", "a ball coloured red", "a red ball", "n is p1")  # a tie: wrong
    paraphrase = TextTriplet("a dog runs across the grass", "a puppy running in a field", "a bowl of pasta", "easy")
    result = triplet_accuracy(minilm_model.embed_texts, [same, negative_is_p1, paraphrase, paraphrase])
    assert result["accuracy"] == pytest.approx(3 / 4) and result["num_triplets"] == 4
    assert result["by_category"] == {"easy": {"accuracy": 1.0, "num_triplets": 2},
                                     "n is p1": {"accuracy": 0.0, "num_triplets": 1},
                                     "p2 is p1": {"accuracy": 1.0, "num_triplets": 1}}


def test_each_text_is_embedded_once(minilm_model):
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return minilm_model.embed_texts(texts)

    triplets = [TextTriplet("a", "b", "c"), TextTriplet("a", "b", "d")]
    assert "by_category" not in triplet_accuracy(embed, triplets)  # no categories named
    assert calls == [["a", "b", "c", "d"]]


def test_the_sample_datas_negatives_change_one_attribute_and_the_paraphrases_none():
    triplets = sample_triplets(seed=0)
    scenes = {scene.caption: scene for scene in all_scenes() + all_scenes(with_motion=False)}
    assert len(triplets) == 3 * len(SHAPES) * len(COLOURS) * len(MOTIONS) + 2 * len(SHAPES) * len(COLOURS)
    for triplet in triplets:
        p1, n = scenes[triplet.p1], scenes[triplet.n]
        changed = [a for a in ("shape", "colour", "motion") if getattr(p1, a) != getattr(n, a)]
        assert changed == [triplet.category]
        assert p1.colour in triplet.p2 and triplet.p2 != triplet.p1  # same meaning, other words
    assert sample_triplets(seed=0) == triplets and sample_triplets(seed=1) != triplets


def test_evaluate_scores_the_y_encoder_on_a_triplet_file_alone(minilm_model, tmp_path, capsys):
    triplets = sample_triplets()[:12]
    write_triplets(str(tmp_path / "t.jsonl"), triplets)
    assert export.main(["--preset", "minilm", "--out", str(tmp_path / "model")]) == 0
    capsys.readouterr()
    assert evaluate.main(["--model", str(tmp_path / "model"), "--text-triplets", str(tmp_path / "t.jsonl"),
                          "--json"]) == 0
    out = capsys.readouterr().out
    assert "y-encoder hard negatives (12 triplets)" in out
    result = json.loads(out.strip().splitlines()[-1])
    # an untrained export's y-encoder is MiniLM under an isometric head: MiniLM's own similarities
    assert result["text_triplets"] == triplet_accuracy(minilm_model.embed_texts, triplets)
    assert "classification" not in result


def test_evaluate_wants_something_to_evaluate_and_well_formed_field_names(tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(tmp_path)])
    assert "give --cache, --text-triplets, or both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(tmp_path), "--text-triplets", "t.jsonl", "--triplet-fields", "a,b"])
    assert "three distinct field names" in capsys.readouterr().err


def test_several_files_score_as_one_set_with_a_row_per_file(minilm_model, tmp_path, capsys):
    """A benchmark kept as a file per category (SugarCrepe's replace_att.json, swap_obj.json, ...):
    records without a category take their file's name; one named in the record keeps it."""
    records = {"replace_att": [{"caption": "a red ball", "caption2": "a ball that is red", "negative_caption": "a blue ball"}],
               "swap_obj": [{"caption": "a dog", "caption2": "a puppy", "negative_caption": "a cat"},
                            {"caption": "a cup", "caption2": "a mug", "negative_caption": "a cap", "category": "named"}]}
    for name, rows in records.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    fields = ("caption", "caption2", "negative_caption")
    triplets = read_triplet_files([str(tmp_path / f"{name}.json") for name in records], fields)
    assert [t.category for t in triplets] == ["replace_att", "swap_obj", "named"]
    assert read_triplet_files([str(tmp_path / "swap_obj.json")], fields)[0].category == ""  # one file: as written

    assert export.main(["--preset", "minilm", "--out", str(tmp_path / "model")]) == 0
    capsys.readouterr()
    assert evaluate.main(["--model", str(tmp_path / "model"), "--text-triplets", str(tmp_path / "replace_att.json"),
                          "--text-triplets", str(tmp_path / "swap_obj.json"),
                          "--triplet-fields", "caption,caption2,negative_caption", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text_triplets"]
    assert result == triplet_accuracy(minilm_model.embed_texts, triplets)
    assert set(result["by_category"]) == {"replace_att", "swap_obj", "named"} and result["num_triplets"] == 3
