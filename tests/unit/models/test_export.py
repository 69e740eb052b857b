import json

import pytest
import torch

from model.export import load_model, read_manifest, save_model


def test_export_round_trip_reproduces_every_output(tiny_model, tiny_config, tmp_path):
    with torch.no_grad():  # make the heads differ from any fresh initialisation
        tiny_model.predictor.head.weight.add_(0.5)
        tiny_model.y_encoder.head.bias.add_(0.25)
        tiny_model.logit_scale.fill_(3.0)
    save_model(tiny_model, tmp_path / "model", metadata={"caption_prompt": "Describe."})
    loaded = load_model(tmp_path / "model").eval()
    tiny_model.eval()

    size = tiny_config.x_encoder.image_size
    frames = torch.randn(2, 4, 3, size, size)
    s_v = tiny_model.encode_visual(frames)
    torch.testing.assert_close(loaded.encode_visual(frames), s_v)
    torch.testing.assert_close(loaded.embed_visual(s_v, ["what?", "where?"]), tiny_model.embed_visual(s_v, ["what?", "where?"]))
    torch.testing.assert_close(loaded.embed_texts(["a red ball"]), tiny_model.embed_texts(["a red ball"]))
    assert loaded.logit_scale.item() == pytest.approx(3.0)
    manifest = read_manifest(tmp_path / "model")
    assert manifest["metadata"]["caption_prompt"] == "Describe."
    assert manifest["config"]["predictor"]["checkpoint"] == "predictor"  # relative: the directory moves freely
    assert not any("/" in json.dumps(manifest["config"][c]["checkpoint"]) for c in ("x_encoder", "y_encoder"))


def test_loading_something_else_fails_clearly(tmp_path):
    from pipelines.models import export

    with pytest.raises(ValueError, match="not an exported VL-JEPA model"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="is not a run directory"):
        export.main(["--run", str(tmp_path), "--out", str(tmp_path / "model")])


def test_an_untrained_preset_exports_the_same_model_for_the_same_seed(tmp_path):
    from safetensors.torch import load_file

    from pipelines.models import export

    for name, seed in (("first", "0"), ("again", "0"), ("other", "1")):
        assert export.main(["--preset", "tiny", "--out", str(tmp_path / name), "--seed", seed]) == 0
    first, again, other = (load_file(tmp_path / name / "heads.safetensors") for name in ("first", "again", "other"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["predictor.head.weight"], other["predictor.head.weight"])
    assert read_manifest(tmp_path / "other")["metadata"]["seed"] == 1


def test_an_export_records_its_x_encoder_and_a_re_export_carries_it_on(tiny_model, tiny_config, tmp_path):
    # MODEL/x_encoder/ names nothing: the model keeps the identity of the checkpoint it was built on,
    # the same fields a feature cache's fingerprint records, so caches can be checked against it
    from model.encoder_identity import MANIFEST_KEY, x_encoder_identity
    from model.export import recorded_x_encoder

    built_on = x_encoder_identity(tiny_config.x_encoder.checkpoint)
    assert built_on["x_encoder"] == "tiny-vjepa2-v1"
    save_model(tiny_model, tmp_path / "first")
    assert recorded_x_encoder(tmp_path / "first") == built_on
    # a model loaded from an export (a later stage, train-decoder's copy) exports the same identity,
    # even to the directory it was loaded from
    for out in ("second", "first"):
        save_model(load_model(tmp_path / "first"), tmp_path / out)
        assert recorded_x_encoder(tmp_path / out) == built_on
    # a model exported before models recorded one: unknown, and a re-export does not invent one
    manifest = json.loads((tmp_path / "first" / "vljepa.json").read_text())
    del manifest[MANIFEST_KEY]
    (tmp_path / "first" / "vljepa.json").write_text(json.dumps(manifest))
    assert recorded_x_encoder(tmp_path / "first") is None
    save_model(load_model(tmp_path / "first"), tmp_path / "third")
    assert recorded_x_encoder(tmp_path / "third") is None
