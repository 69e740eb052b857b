import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ops.data.shards import iter_samples
from pipelines.data import make_shards
from tests.media_fixtures import clip_bytes, image_bytes


def _media(tmp_path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "clip.mp4").write_bytes(clip_bytes())
    (tmp_path / "media" / "photo.jpg").write_bytes(image_bytes())
    return tmp_path / "media"


def test_jsonl_manifest_becomes_shards_with_a_report(tmp_path, capsys):
    media = _media(tmp_path)
    manifest = tmp_path / "data.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"path": "media/clip.mp4", "caption": "a red ball moves left"},
        {"path": "media/photo.jpg", "query": "What colour?", "answer": "blue", "candidates": ["red", "blue"]},
        {"path": "media/missing.mp4", "caption": "gone"},
    ]))
    assert make_shards.main(["--input", str(manifest), "--out", str(tmp_path / "shards"),
                             "--samples-per-shard", "2", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts == {"shards": 2, "written": 2, "failed": 1}
    first = list(iter_samples(str(tmp_path / "shards" / "00000.tar")))
    assert [s.key for s in first] == ["000000000", "000000001"]
    assert first[0].members["mp4"] == (media / "clip.mp4").read_bytes()
    assert json.loads(first[1].members["json"])["candidates"] == ["red", "blue"]
    report = pq.read_table(tmp_path / "shards" / "00001.parquet").to_pylist()
    assert report[0]["status"] == "error" and "missing.mp4" in report[0]["path"]


def test_folder_and_csv_inputs(tmp_path):
    media = _media(tmp_path)
    (media / "clip.txt").write_text("a red ball moves left")
    (media / "photo.txt").write_text("a blue cube")
    assert make_shards.main(["--input", str(media), "--out", str(tmp_path / "from-folder")]) == 0
    keys = {s.members["txt"].decode() for s in iter_samples(str(tmp_path / "from-folder" / "00000.tar"))}
    assert keys == {"a red ball moves left", "a blue cube"}

    csv_file = tmp_path / "data.csv"
    csv_file.write_text("path,caption,candidates\nmedia/clip.mp4,a ball,left|right\n")
    assert make_shards.main(["--input", str(csv_file), "--out", str(tmp_path / "from-csv")]) == 0
    (sample,) = iter_samples(str(tmp_path / "from-csv" / "00000.tar"))
    assert json.loads(sample.members["json"])["candidates"] == ["left", "right"]


def test_an_input_that_is_not_there_or_not_a_manifest_fails_clearly(tmp_path):
    from ops.data.make_shards import read_entries

    with pytest.raises(ValueError, match="does not exist"):
        list(read_entries(str(tmp_path / "missing")))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a folder, a .csv nor a .jsonl"):
        list(read_entries(str(tmp_path / "notes.txt")))


def test_a_folder_given_as_a_relative_path_is_read(tmp_path, monkeypatch):
    # `vljepa make-shards --input media` from the folder's parent, as a user types it
    media = _media(tmp_path)
    (media / "clip.txt").write_text("a red ball moves left")
    (media / "photo.txt").write_text("a blue cube")
    (media / "photo.json").write_text(json.dumps({"path": "elsewhere.jpg", "query": "What colour?"}))
    monkeypatch.chdir(tmp_path)
    assert make_shards.main(["--input", "media", "--out", "shards"]) == 0
    samples = {s.members["txt"].decode(): s for s in iter_samples(str(tmp_path / "shards" / "00000.tar"))}
    assert samples["a blue cube"].members["jpg"] == (media / "photo.jpg").read_bytes()  # the sidecar's path is ignored
    assert json.loads(samples["a blue cube"].members["json"])["query"] == "What colour?"
    report = pq.read_table(tmp_path / "shards" / "00000.parquet").to_pylist()
    assert [row["status"] for row in report] == ["ok", "ok"]


def test_a_shard_size_below_one_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        make_shards.main(["--input", str(tmp_path), "--out", str(tmp_path / "shards"), "--samples-per-shard", "0"])
    assert exit_info.value.code == 2


def _report(out) -> list[dict]:
    return [row for path in sorted(out.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_an_unreadable_record_is_a_reported_failure_and_every_good_one_goes_through(tmp_path, capsys):
    # before: one bad line or sidecar stopped the whole run (the samples after it were never written,
    # the open shard left unfinished); a JSON line that was not an object was a traceback
    media = _media(tmp_path)
    manifest = tmp_path / "data.jsonl"
    manifest.write_text("\n".join([json.dumps({"path": "media/clip.mp4", "caption": "first"}), "{not json",
                                   "[1, 2]", json.dumps({"path": "media/photo.jpg", "caption": "x", "candidates": "[oops"}),
                                   json.dumps({"path": "media/photo.jpg", "caption": "last"})]))
    assert make_shards.main(["--input", str(manifest), "--out", str(tmp_path / "jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"shards": 1, "written": 2, "failed": 3}
    assert [s.members["txt"] for s in iter_samples(str(tmp_path / "jsonl" / "00000.tar"))] == [b"first", b"last"]
    errors = [row["error_message"] for row in _report(tmp_path / "jsonl") if row["status"] == "error"]
    assert errors[0].startswith(f"{manifest}:2: not JSON")
    assert errors[1] == f"{manifest}:3: not a JSON object (list)"
    assert errors[2].startswith(f"{manifest}:4: candidates '[oops' are not a JSON list")

    csv_file = tmp_path / "data.csv"
    csv_file.write_text('path,caption,candidates\nmedia/clip.mp4,a ball,"[bad"\nmedia/photo.jpg,a cube,a|b\n')
    assert make_shards.main(["--input", str(csv_file), "--out", str(tmp_path / "csv")]) == 0
    rows = _report(tmp_path / "csv")
    assert [r["status"] for r in rows] == ["error", "ok"] and rows[0]["error_message"].startswith(f"{csv_file}:2: ")

    (media / "clip.txt").write_text("a red ball")
    (media / "clip.json").write_text("{broken")
    (media / "photo.txt").write_text("a blue cube")
    assert make_shards.main(["--input", str(media), "--out", str(tmp_path / "folder")]) == 0
    rows = {Path(r["path"]).name: r for r in _report(tmp_path / "folder")}
    assert rows["clip.mp4"]["status"] == "error" and "clip.json: not JSON" in rows["clip.mp4"]["error_message"]
    assert rows["photo.jpg"]["status"] == "ok"
