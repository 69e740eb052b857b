"""`vljepa caption` and `vljepa stream` on real H.264 media, and the sliding windows under them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from model.export import load_model
from model.y_decoder_export import load_y_decoder
from ops.data.long_stream import LongStreamConfig, make_long_stream
from ops.data.samples import SampleError
from ops.decode.selective_decoding import DecodePlan
from ops.decode.stream_windows import WindowSpec, iter_windows, window_starts
from pipelines import cli
from pipelines.decode import caption, stream
from tests.media_fixtures import clip_bytes, image_bytes

STREAM = LongStreamConfig(num_events=4, min_seconds=3.0, max_seconds=5.0, frame_size=64)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    video, annotations = make_long_stream(STREAM)
    path = tmp_path_factory.mktemp("stream") / "stream.mp4"
    path.write_bytes(video)
    return path, annotations


def test_event_lengths_uniform_or_loguniform():
    rng = np.random.default_rng(0)
    uniform = LongStreamConfig(min_seconds=2.0, max_seconds=20.0)
    loguniform = LongStreamConfig(min_seconds=2.0, max_seconds=20.0, durations="loguniform")
    drawn = {c.durations: np.array([c.event_seconds(rng) for _ in range(4000)]) for c in (uniform, loguniform)}
    for lengths in drawn.values():
        assert lengths.min() >= 2.0 and lengths.max() <= 20.0
    # uniform: median at the midpoint (11 s); log-uniform: at the geometric mean (6.3 s), most events short
    assert np.median(drawn["uniform"]) == pytest.approx(11.0, abs=0.5)
    assert np.median(drawn["loguniform"]) == pytest.approx(np.sqrt(2.0 * 20.0), abs=0.4)
    with pytest.raises(ValueError, match="durations"):
        LongStreamConfig(durations="normal")
    with pytest.raises(ValueError, match="min_seconds"):
        LongStreamConfig(min_seconds=5.0, max_seconds=2.0)


def test_windows_slide_over_the_whole_video(long_video):
    path, annotations = long_video
    spec = WindowSpec(window_s=2.0, stride_s=0.5, num_frames=8, image_size=64)
    chunks = list(iter_windows(path.read_bytes(), spec, chunk=5))
    # positions in the video (seconds of media time), not wall-clock timings
    centres_s = np.concatenate([t for t, _ in chunks])
    frames = np.concatenate([f for _, f in chunks])
    video_length_s = annotations[-1]["end"]
    assert frames.shape[1:] == (8, 64, 64, 3) and frames.dtype == np.uint8
    assert len(centres_s) == len(window_starts(round(video_length_s * STREAM.fps), STREAM.fps, spec))
    assert centres_s[0] == pytest.approx(1.0) and np.allclose(np.diff(centres_s), 0.5)  # first centre, stride
    assert centres_s[-1] <= video_length_s - 1.0 + 1e-6  # the last window ends inside the video
    assert not np.array_equal(frames[0], frames[-1])  # real frames from different events


def test_bad_videos_are_refused_with_a_reason():
    spec = WindowSpec(num_frames=8, image_size=64)
    with pytest.raises(SampleError, match="empty"):
        list(iter_windows(b"", spec))
    with pytest.raises(SampleError, match="corrupt"):
        list(iter_windows(clip_bytes()[:300], spec))
    with pytest.raises(SampleError, match="video_too_short: video has 4 frames, fewer than the 8"):
        list(iter_windows(clip_bytes(num_frames=4), spec))


def test_a_window_too_short_for_the_models_frames_names_the_shortest_that_works():
    # before: "video has 16 frames, fewer than the 8 a window needs" (the video was not the problem)
    short = WindowSpec(window_s=0.5, num_frames=8, image_size=64)  # 4 frames of an 8 fps clip
    with pytest.raises(SampleError, match="window_too_short: a 0.5 s window holds 4 frames of this 8 fps video, "
                                          "fewer than the 8 a window needs: use a window of at least 1 s"):
        list(iter_windows(clip_bytes(num_frames=16), short))
    enough = WindowSpec(window_s=1.0, num_frames=8, image_size=64)
    assert sum(len(t) for t, _ in iter_windows(clip_bytes(num_frames=16), enough)) > 0


def test_a_video_over_the_window_limit_is_refused_before_decoding(long_video, monkeypatch):
    import ops.data.frames

    path, _ = long_video
    spec = WindowSpec(window_s=2.0, stride_s=0.5, num_frames=8, image_size=64)
    count = sum(len(t) for t, _ in iter_windows(path.read_bytes(), spec))
    assert sum(len(t) for t, _ in iter_windows(path.read_bytes(), spec, max_windows=count)) == count  # at the limit

    def no_decoding(*_):
        raise AssertionError("frames were decoded for a video over the limit")

    monkeypatch.setattr(ops.data.frames, "read_frames", no_decoding)
    with pytest.raises(SampleError, match=f"too_many_windows: the video gives {count} windows, more than the {count - 1}"):
        next(iter_windows(path.read_bytes(), spec, max_windows=count - 1))

def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_caption_cli_prints_the_decoded_text(captioning_model_dir, tmp_path, capsys):
    media = tmp_path / "clip.mp4"
    media.write_bytes(clip_bytes())
    assert cli.main(["caption", "--model", str(captioning_model_dir), "--media", str(media), "--json"]) == 0
    printed = _last_json(capsys)
    model, decoder = load_model(captioning_model_dir).eval(), load_y_decoder(captioning_model_dir).eval()
    from pipelines.decode.caption import Captioner

    direct = caption.caption(Captioner(model, decoder, "", captioning_model_dir), media.read_bytes())
    assert printed == direct and printed["kind"] == "video" and printed["text"]
    image = tmp_path / "image.png"
    image.write_bytes(image_bytes("png"))
    assert caption.main(["--model", str(captioning_model_dir), "--media", str(image), "--beams", "3", "--json"]) == 0
    assert _last_json(capsys)["kind"] == "image"


def test_caption_cli_errors_are_clear(captioning_model_dir, minilm_config, tmp_path, capsys):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not media at all")
    assert caption.main(["--model", str(captioning_model_dir), "--media", str(junk)]) == 2
    assert "not an image" in capsys.readouterr().err
    junk.write_bytes(b"")
    assert caption.main(["--model", str(captioning_model_dir), "--media", str(junk)]) == 2
    assert "the media is empty (0 bytes)" in capsys.readouterr().err  # not "not an image or a video"
    plain = tmp_path / "plain"
    from pipelines.models import export

    assert export.main(["--preset", "tiny", "--out", str(plain)]) == 0
    assert caption.main(["--model", str(plain), "--media", str(junk)]) == 2
    assert "train-decoder" in capsys.readouterr().err


@pytest.mark.parametrize("strategy, extra", [("adaptive", ["--segments", "4"]), ("uniform", ["--segments", "4"]),
                                             ("adaptive", ["--segments", "4", "--smooth", "3"]),
                                             ("online", ["--threshold", "0.05"])])
def test_stream_cli_returns_timed_events(captioning_model_dir, long_video, capsys, strategy, extra):
    path, annotations = long_video
    assert stream.main(["--model", str(captioning_model_dir), "--video", str(path), "--strategy", strategy,
                        *extra, "--json"]) == 0
    result = _last_json(capsys)
    assert result["windows"] > 20
    events = result["events"]
    assert events and all(isinstance(e["text"], str) for e in events)
    times = [e["time"] for e in events]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= annotations[-1]["end"]
    if strategy != "online":
        assert len(events) == 4
        assert all(e["start"] <= e["time"] <= e["end"] for e in events)


@pytest.mark.parametrize("flag, value", [("--smooth", "0"), ("--beams", "0"), ("--segments", "0"), ("--window", "0"),
                                         ("--stride", "-1"), ("--window", "nan"), ("--stride", "inf"),
                                         ("--seconds-per-decode", "0"), ("--threshold", "-1"), ("--online-window", "1")])
def test_stream_cli_refuses_values_with_a_usage_error(flag, value, capsys):
    # before: --beams 0 and --seconds-per-decode 0 divided by zero, --stride inf overflowed (tracebacks),
    # --online-window 0 printed an event ending before it started
    with pytest.raises(SystemExit) as exit_info:
        stream.main(["--model", "m", "--video", "v.mp4", flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: must be" in capsys.readouterr().err


@pytest.mark.parametrize("field, value", [("smooth", 0), ("seconds_per_decode", 0.0), ("seconds_per_decode", math.inf),
                                          ("threshold", -0.5), ("threshold", math.nan), ("online_window", 1)])
def test_a_decode_plan_refuses_what_the_cli_refuses(field, value):
    # the same bounds for Python callers of ops.decode.selective_decoding
    DecodePlan().validate()
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')} must be"):
        DecodePlan(**{field: value}).validate()


@pytest.mark.parametrize("window, stride", [(0.0, 0.5), (2.0, -1.0), (math.nan, 0.5), (2.0, math.inf)])
def test_a_window_spec_refuses_non_positive_or_non_finite_seconds(window, stride):
    with pytest.raises(ValueError, match="positive, finite seconds"):
        WindowSpec(window_s=window, stride_s=stride).validate()


def test_stream_cli_refuses_an_image(captioning_model_dir, tmp_path, capsys):
    image = tmp_path / "image.jpg"
    image.write_bytes(image_bytes())
    assert stream.main(["--model", str(captioning_model_dir), "--video", str(image)]) == 2
    assert "stream:" in capsys.readouterr().err
