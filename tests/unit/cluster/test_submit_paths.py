"""A submitted job runs in a temporary copy of the project on the cluster: a relative path in its
command resolves there (a run written into a directory nothing keeps, a cache that is not there).
Such a command is refused before anything is sent; URLs, absolute paths and hub ids go through."""

import pytest

from pipelines.cluster.submit import refuse_relative_paths


def test_a_relative_output_is_refused_before_connecting(tmp_path, monkeypatch, capsys):
    from pipelines.cluster import submit

    monkeypatch.chdir(tmp_path)
    # port 9 (discard) has no dashboard: had submit connected first, it would say the cluster is down
    code = submit.main(["--address", "http://127.0.0.1:9", "--", "train", "--cache", "s3://b/cache",
                        "--out", "runs/sft"])
    err = capsys.readouterr().err
    assert code == 2 and "--out runs/sft is a relative path" in err and "would be lost" in err
    assert f"{tmp_path}/runs/sft if they share this machine's filesystem" in err
    assert "is the cluster up" not in err


@pytest.mark.parametrize("command", [
    ["evaluate", "--model", "/models/m", "--cache", "cache/eval"],
    ["evaluate", "--model", "/models/m", "--cache=./cache/eval"],
    ["train", "--cache", "s3://b/a", "--cache", "cache/eval", "--out", "/runs/x"],
    ["cache-features", "--shards", "data/train/{video,vqa}-*.tar", "--out", "s3://b/cache"],
    ["index-build", "--model", "/m", "--cache", "s3://b/cache", "--index", "index"],
])
def test_local_relative_paths_are_refused(command, tmp_path):
    (tmp_path / "cache" / "eval").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match=r"is a relative path: the job runs in a copy of the project"):
        refuse_relative_paths(command, cwd=str(tmp_path))


@pytest.mark.parametrize("command", [
    ["train", "--cache", "s3://b/cache", "--out", "/mnt/runs/sft", "--storage", "s3://b/ckpt", "--json"],
    ["evaluate", "--model", "models:/vljepa/3", "--cache", "file:///mnt/cache"],
    ["train-decoder", "--model", "runs:/abc/model", "--decoder-checkpoint", "meta-llama/Llama-3.2-1B",
     "--cache", "/mnt/cache", "--out", "/mnt/runs/d"],
    ["evaluate", "--model", "/m", "--cache", "x"],  # nothing here by that name: the verb judges it
    ["summary", "--preset", "tiny", "--json"],
])
def test_urls_absolute_paths_and_hub_ids_go_through(command, tmp_path):
    (tmp_path / "cache").mkdir()
    refuse_relative_paths(command, cwd=str(tmp_path))
