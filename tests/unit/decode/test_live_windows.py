"""A live feed's windows (ops/decode/live_windows.py) are a recorded video's (ops/decode/stream_windows.py): the
same frames, sampled the same way, at the same times, emitted as each window's last frame arrives."""

from __future__ import annotations

import numpy as np
import pytest

from ops.data.frames import frames_at_size, open_video, read_frames
from ops.data.long_stream import LongStreamConfig, make_long_stream
from ops.data.samples import WINDOW_TOO_SHORT, SampleError
from ops.decode.live_windows import LiveWindows
from ops.decode.stream_windows import WindowSpec, iter_windows


def recorded(num_events: int, seconds: float) -> bytes:
    video, _ = make_long_stream(LongStreamConfig(num_events=num_events, min_seconds=seconds, max_seconds=seconds,
                                                 frame_size=96))  # not the model's size: frames are resized
    return video


def live_windows(video: bytes, spec: WindowSpec) -> tuple[list[float], list[np.ndarray], list[int]]:
    """Feed the video's frames one by one, as a camera would -> (times, windows, frames received
    when each window came out)."""
    reader, count, fps = open_video(video)
    live = LiveWindows(spec, fps)
    times, windows, when = [], [], []
    for n, frame in enumerate(read_frames(reader, range(count)), start=1):
        for centre, frames in live.push(frames_at_size(frame[None], spec.image_size)[0]):
            times.append(centre), windows.append(frames), when.append(n)
    for centre, frames in live.finish():
        times.append(centre), windows.append(frames), when.append(count)
    return times, windows, when


@pytest.mark.parametrize("events, seconds, stride", [(3, 3.0, 0.25), (3, 3.0, 0.5), (1, 1.5, 0.5)])
def test_live_windows_are_the_recorded_videos(events, seconds, stride):
    video = recorded(events, seconds)
    spec = WindowSpec(window_s=2.0, stride_s=stride, num_frames=8, image_size=64)
    expected_times, expected_frames = map(np.concatenate, zip(*iter_windows(video, spec)))
    times, windows, when = live_windows(video, spec)
    assert times == expected_times.tolist()
    assert np.array_equal(np.stack(windows), expected_frames)
    if events == 1:  # 12 frames, shorter than a 16-frame window: one window over all of it, at the end
        assert len(windows) == 1 and when == [12]
    else:  # each window out as its last frame (2 s = 16 frames in) arrived
        assert when == [16 + i * round(stride * 8) for i in range(len(windows))]


def test_a_window_too_short_for_the_model_is_refused_at_once():
    with pytest.raises(SampleError) as refused:
        LiveWindows(WindowSpec(window_s=0.5, num_frames=8), fps=8)  # 4 frames, 8 sampled
    assert refused.value.reason == WINDOW_TOO_SHORT and "at least 1 s" in refused.value.message
    for fps in (0, -8, float("nan"), 1000):
        with pytest.raises(ValueError, match="fps"):
            LiveWindows(WindowSpec(), fps=fps)


def test_only_one_window_of_frames_is_held():
    live = LiveWindows(WindowSpec(window_s=2.0, stride_s=0.5, num_frames=8, image_size=8), fps=8)
    emitted = sum(len(live.push(np.full((8, 8, 3), n % 256, dtype=np.uint8))) for n in range(2000))
    assert emitted == 1 + (2000 - 16) // 4 and len(live.held) == 16
    assert live.finish() == []  # a long feed ends with no extra window
