"""A user's mistake gets one line on stderr and exit status 2 from a process entry point, not a
traceback; bugs still surface."""

import subprocess
import sys

import numpy as np
import pytest

from pipelines.cli.report import TRACEBACK_ENV, run_as_process


def _no_such_cache():
    raise ValueError("/data/cach holds no feature cache")


def test_a_user_error_is_one_line_naming_the_verb_and_where(capsys, monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    assert run_as_process(_no_such_cache, "train") == 2
    err = capsys.readouterr().err
    assert err.startswith("vljepa train: error: /data/cach holds no feature cache\n")
    assert "test_cli_errors.py" in err and "_no_such_cache" in err  # the raise site, for a bug that raises one
    assert "Traceback" not in err


def test_other_errors_and_the_traceback_switch_still_raise(monkeypatch):
    def crash():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_as_process(crash, "train")
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(ValueError, match="holds no feature cache"):
        run_as_process(_no_such_cache, "train")


def test_the_console_entry_point_reports_a_missing_model_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "evaluate", "--model", str(tmp_path / "nope"),
                           "--cache", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"vljepa evaluate: error: {tmp_path / 'nope'} is not an exported VL-JEPA model" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("flag", ["--actors", "--frames", "--batch-size", "--actor-memory-gb"])
def test_cache_features_refuses_a_count_below_one(flag, capsys):
    from pipelines.cache import cache_features

    with pytest.raises(SystemExit) as exit_info:
        cache_features.parse_args(["--shards", "s", "--out", "o", flag, "0"])
    assert exit_info.value.code == 2
    assert f"argument {flag}: must be" in capsys.readouterr().err


@pytest.mark.parametrize("verb, flag, value", [("train", "--log-every", "0"), ("train", "--checkpoint-every", "0"),
                                               ("train", "--lr", "-1"), ("train-decoder", "--checkpoint-every", "0"),
                                               ("train-decoder", "--num-beams", "0"), ("caption", "--beams", "0"),
                                               ("serve", "--max-request-mb", "0"), ("serve", "--max-stream-windows", "0"),
                                               ("train", "--lr", "nan"), ("train-decoder", "--lr", "inf"),
                                               ("evaluate", "--max-samples", "0"), ("sample-data", "--samples-per-shard", "0"),
                                               ("serve", "--port", "0"), ("serve", "--port", "70000")])
def test_training_and_decoding_refuse_values_that_would_fail_in_the_workers(verb, flag, value, capsys):
    # a zero here was a modulo by zero inside every Ray Train worker, retried --max-failures times
    from pipelines.data import sample_data
    from pipelines.decode import caption, train_decoder
    from pipelines.evaluate import evaluate
    from pipelines.serve import app as serve
    from pipelines.train import train

    required = {"train": ["--stage", "sft", "--cache", "c", "--out", "o"],
                "train-decoder": ["--model", "m", "--cache", "c", "--out", "o"],
                "caption": ["--model", "m", "--media", "f"], "serve": ["--model", "m"],
                "evaluate": ["--model", "m", "--cache", "c"], "sample-data": ["--out", "o"]}[verb]
    module = {"train": train, "train-decoder": train_decoder, "caption": caption, "serve": serve,
              "evaluate": evaluate, "sample-data": sample_data}[verb]
    with pytest.raises(SystemExit) as exit_info:
        module.main([*required, flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: must be" in capsys.readouterr().err


def test_serve_checks_its_index_before_starting_ray(captioning_model_dir, tmp_path, ray_must_not_start):
    """A mistyped --index, or an index built with another model, is one line before anything starts."""
    from ops.retrieval.table import IndexNotFound
    from pipelines.cluster.net import free_loopback_port
    from pipelines.serve import app as serve
    from tests.retrieval_tables import write_table

    run = ["--model", str(captioning_model_dir), "--port", str(free_loopback_port())]
    with pytest.raises(IndexNotFound, match=r"no retrieval index at .*typo .*vljepa index-build"):
        serve.main([*run, "--index", str(tmp_path / "typo")])
    write_table(str(tmp_path / "other"), np.eye(384, dtype=np.float32)[:2], fingerprint="another-model")
    with pytest.raises(ValueError, match=r"holds predictions of model another-model, this model is [0-9a-f]{16}"):
        serve.main([*run, "--index", str(tmp_path / "other")])


def test_serve_refuses_a_port_a_server_already_listens_on(captioning_model_dir, ray_must_not_start, monkeypatch):
    """Serve's proxy binds with SO_REUSEPORT, so a second server on a taken port would start and
    share the connections with the first: two models answering at random."""
    import socket

    from pipelines.serve import app as serve

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as proxy:  # listening as Serve's proxy does
        proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        taken = proxy.getsockname()[1]
        with pytest.raises(ValueError, match=f"127.0.0.1:{taken}: something already listens there"):
            serve.main(["--model", str(captioning_model_dir), "--port", str(taken)])


def test_a_taken_metrics_port_or_one_for_a_cluster_is_refused_before_ray_starts(captioning_model_dir, monkeypatch,
                                                                                ray_must_not_start, capsys):
    import socket

    from pipelines.cluster.net import free_loopback_port
    from pipelines.serve import app as serve

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as agent:
        agent.bind(("127.0.0.1", 0))
        agent.listen()
        taken = agent.getsockname()[1]
        with pytest.raises(ValueError, match=f"127.0.0.1:{taken}: something already listens there"):
            serve.main(["--model", str(captioning_model_dir), "--port", str(free_loopback_port()),
                        "--metrics-port", str(taken)])
    with pytest.raises(SystemExit):  # a cluster's nodes export on the port `ray start` gave them
        serve.main(["--model", str(captioning_model_dir), "--address", "ray://head:10001", "--metrics-port", "9100"])
    assert "--metrics-port is for a local instance" in capsys.readouterr().err


def test_storage_its_user_sets_up_is_a_user_error_with_what_to_set(capsys, monkeypatch):
    # before: botocore's traceback for `cache-features --shards s3://...` without credentials
    from botocore.exceptions import NoCredentialsError

    monkeypatch.delenv(TRACEBACK_ENV, raising=False)

    def no_credentials():
        raise NoCredentialsError()

    def unreadable():
        raise PermissionError("Access Denied: s3://bucket/shards")

    assert run_as_process(no_credentials, "cache-features") == 2
    err = capsys.readouterr().err
    assert err.startswith("vljepa cache-features: error: Unable to locate credentials (S3 needs credentials: AWS_ACCESS_KEY_ID")
    assert "AWS_ENDPOINT_URL" in err and "Traceback" not in err
    assert run_as_process(unreadable, "train") == 2
    assert "vljepa train: error: Access Denied: s3://bucket/shards" in capsys.readouterr().err


def test_cache_features_refuses_an_unwritable_out_before_decoding_anything(tiny_config, tmp_path, ray_must_not_start):
    # before: every shard was parsed, decoded and featurised, then the first commit task failed
    # with a traceback and the computed features were lost
    import tarfile

    from pipelines.cache import cache_features

    shards = tmp_path / "shards"
    shards.mkdir()
    tarfile.open(shards / "s-000.tar", "w").close()
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    with pytest.raises(PermissionError, match=f"cannot write the feature cache at {not_a_dir}/cache"):
        cache_features.main(["--shards", str(shards), "--out", str(not_a_dir / "cache"), "--preset", "tiny"])
    assert list(shards.iterdir()) == [shards / "s-000.tar"]


def test_cache_features_says_how_to_cache_sources_whose_shard_names_collide(tmp_path, ray_must_not_start):
    import tarfile

    from pipelines.cache import cache_features

    for source in ("datacomp", "yfcc"):  # both number their shards from 00000
        (tmp_path / source).mkdir()
        tarfile.open(tmp_path / source / "00000.tar", "w").close()
    with pytest.raises(SystemExit, match=r"share file names \(00000\).*cache each source to its own --out.*"
                                         r"--cache A --cache B"):
        cache_features.main(["--shards", f"{tmp_path}/{{datacomp,yfcc}}", "--out", str(tmp_path / "cache"),
                             "--preset", "tiny"])
    assert not (tmp_path / "cache").exists()


def test_serve_refuses_an_empty_token_instead_of_serving_without_auth(captioning_model_dir, tmp_path,
                                                                       ray_must_not_start, monkeypatch):
    # before: an empty token file (a secret mounted empty) started the server with no auth at all
    from pipelines.cluster.net import free_loopback_port
    from pipelines.serve import app as serve
    from pipelines.serve.args import ServeAppArgs

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=f"token file {empty} is empty: refusing to serve without"):
        serve.main(["--model", str(captioning_model_dir), "--token-file", str(empty), "--port", str(free_loopback_port())])
    monkeypatch.setenv(serve.TOKEN_ENV, " ")
    with pytest.raises(ValueError, match=r"\$VLJEPA_SERVE_TOKEN is empty"):
        serve.build_app(ServeAppArgs(model=str(captioning_model_dir)))  # `serve run` / `serve deploy` too
    monkeypatch.setenv(serve.TOKEN_ENV, "from-env")
    assert serve.serving_token(ServeAppArgs(model="m")) == "from-env"
    empty.write_text("from-file\n")
    assert serve.serving_token(ServeAppArgs(model="m", token_file=str(empty))) == "from-file"
    monkeypatch.delenv(serve.TOKEN_ENV)
    assert serve.serving_token(ServeAppArgs(model="m")) is None  # no token asked for: no auth


def test_a_user_error_in_every_training_worker_is_one_line_from_where_the_worker_raised_it(capsys, monkeypatch):
    # before: Ray Train's WorkerGroupError traceback, exit status 1, the workers' message inside it
    from ray.train import WorkerGroupError

    monkeypatch.delenv(TRACEBACK_ENV, raising=False)

    def raised_in_a_worker() -> ValueError:  # as the driver gets it: unpickled, without its traceback
        return ValueError("the training data yields no full batch: lower --batch-size or add data")

    def failed_run():
        raise WorkerGroupError("rank 0 and 1 failed", {1: raised_in_a_worker(), 0: raised_in_a_worker()})

    assert run_as_process(failed_run, "train") == 2
    err = capsys.readouterr().err
    assert err.startswith("vljepa train: error: the training data yields no full batch: lower --batch-size or add "
                          "data (in 2 training worker(s))\n")
    assert "failed_run, from a training worker;" in err and "Traceback" not in err

    def crashed_worker():  # a bug in a worker is still its traceback
        raise WorkerGroupError("rank 0 failed", {0: raised_in_a_worker(), 1: RuntimeError("a bug")})

    with pytest.raises(WorkerGroupError):
        run_as_process(crashed_worker, "train")


def test_index_build_refuses_before_ray_starts(captioning_model_dir, tmp_path, ray_must_not_start):
    """A cache that is not one, PQ sub-vectors that do not divide the width (or given to another
    index type), an index under a file,
    an index of another model, or no cache for an index holding cache items: one line each, before
    anything is predicted."""
    from ops.retrieval.table import TABLE_NAME, connect, rows_table, table_schema
    from pipelines.retrieval import index_build
    from tests.retrieval_tables import write_table

    run = ["--model", str(captioning_model_dir)]
    with pytest.raises(ValueError, match="typo holds no feature cache"):
        index_build.main([*run, "--index", str(tmp_path / "index"), "--cache", str(tmp_path / "typo")])
    with pytest.raises(ValueError, match="--num-sub-vectors 7 does not divide the embedding width 384"):
        index_build.main([*run, "--index", str(tmp_path / "index"), "--ann-index", "ivf_pq", "--num-sub-vectors", "7"])
    with pytest.raises(ValueError, match="sub-vectors are IVF_PQ's: the ivf_rq index takes none"):
        index_build.main([*run, "--index", str(tmp_path / "index"), "--num-sub-vectors", "8"])
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match="a-file is a file; give a directory"):
        index_build.main([*run, "--index", str(tmp_path / "a-file")])
    write_table(str(tmp_path / "other"), np.eye(384, dtype=np.float32)[:2], fingerprint="another-model")
    with pytest.raises(ValueError, match=r"holds predictions of model another-model, this model is [0-9a-f]{16}"):
        index_build.main([*run, "--index", str(tmp_path / "other")])
    from ops.retrieval.table import model_fingerprint

    schema = table_schema(384, model_fingerprint(captioning_model_dir))
    connect(str(tmp_path / "mine")).create_table(TABLE_NAME, schema=schema, data=rows_table(
        schema, ["eval/0/a"], ["video"], ["a caption"], ["eval"], np.ones((1, 384))))
    with pytest.raises(ValueError, match="holds 1 items of feature caches: index-build with no --cache would drop"):
        index_build.main([*run, "--index", str(tmp_path / "mine")])
