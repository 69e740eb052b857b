"""Where selective decoding decodes: uniform, Ward with temporal connectivity, online variance."""

from __future__ import annotations

import numpy as np
import pytest

from ops.decode.segmentation import (
    Segment,
    online_segments,
    segment_embeddings,
    smooth_stream,
    uniform_segments,
    ward_segments,
)

LENGTHS = [30, 6, 14, 50]  # events of very different lengths: what a fixed rate handles badly


def piecewise_stream(seed: int = 0, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(LENGTHS), 32))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    stream = np.concatenate([np.repeat(c[None], n, axis=0) for c, n in zip(centres, LENGTHS)])
    return stream + rng.normal(scale=noise / np.sqrt(32), size=stream.shape)


def boundaries(segments: list[Segment]) -> list[int]:
    return [s.start for s in segments[1:]]


def test_ward_segments_find_the_events_uniform_segments_miss():
    stream = piecewise_stream()
    truth = list(np.cumsum(LENGTHS)[:-1])
    assert boundaries(ward_segments(stream, len(LENGTHS))) == truth
    assert boundaries(uniform_segments(len(stream), len(LENGTHS))) != truth


@pytest.mark.parametrize("count", [1, 3, 7, 100, 500])
def test_segments_tile_the_stream(count):
    stream = piecewise_stream()
    for segments in (ward_segments(stream, count), uniform_segments(len(stream), count)):
        assert segments[0].start == 0 and segments[-1].end == len(stream)
        assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
        assert len(segments) == min(count, len(stream))
        assert all(s.start <= s.midpoint < s.end for s in segments)


def test_online_decodes_once_per_change_after_it_settles():
    stream = piecewise_stream()
    segments = online_segments(stream, window=4, threshold=0.2)
    decode_steps = [s.end - 1 for s in segments]
    assert len(segments) == len(LENGTHS)
    changes = list(np.cumsum(LENGTHS)[:-1])
    for change, decoded in zip(changes, decode_steps[1:]):
        assert change <= decoded <= change + 4  # after the change, within one window of it
    assert len(online_segments(stream, window=4, threshold=10.0)) == 1  # never above threshold: one decode


def test_pooled_embedding_is_the_normalised_segment_mean():
    stream = piecewise_stream()
    segments = [Segment(0, 30), Segment(30, 36)]
    pooled = segment_embeddings(stream, segments, pooled=True)
    expected = stream[:30].mean(axis=0)
    assert np.allclose(pooled[0], expected / np.linalg.norm(expected))
    exact = segment_embeddings(stream, segments, pooled=False)
    assert np.allclose(exact[1], stream[32] / np.linalg.norm(stream[32]))


def test_smoothing_is_a_centred_moving_average():
    stream = np.arange(12, dtype=float).reshape(6, 2)
    smoothed = smooth_stream(stream, 3)
    assert np.allclose(smoothed[2], stream[1:4].mean(axis=0))
    assert np.allclose(smoothed[0], stream[:2].mean(axis=0))  # shrinks at the ends
    assert np.allclose(smoothed[-1], stream[-2:].mean(axis=0))
    assert smooth_stream(stream, 1) is stream


def test_smoothing_keeps_an_outlier_window_from_becoming_a_segment():
    stream = piecewise_stream(noise=0.02)
    stream[10] = -stream[10] * 3  # one wild prediction inside the first event
    truth = list(np.cumsum(LENGTHS)[:-1])
    assert boundaries(ward_segments(stream, len(LENGTHS))) != truth  # plain Ward spends a segment on it
    assert boundaries(ward_segments(stream, len(LENGTHS), smooth=5)) == truth


@pytest.mark.parametrize("steps", [0, 2, 3, 130])  # none, shorter than a window, one window, a long stream
def test_the_online_segmenter_decides_each_step_as_it_arrives(steps):
    """A live stream sees one embedding at a time: every decode is answered by the step that ends it
    (nothing waits for the end of the stream), and the decodes are online_segments' over the whole."""
    from ops.decode.segmentation import OnlineSegmenter

    stream = np.concatenate([piecewise_stream()] * 2)[:steps]
    segmenter = OnlineSegmenter(window=4, threshold=0.2)
    live = []
    for t, embedding in enumerate(stream):
        segment = segmenter.push(embedding)
        if segment is not None:
            assert segment.end == t + 1 and segment.end - segment.start <= 4
            live.append(segment)
    last = segmenter.finish()
    if last is not None:
        assert steps < 4 and not live and last == Segment(0, steps)  # a stream shorter than a window: one decode
        live.append(last)
    assert live == online_segments(stream, window=4, threshold=0.2)
    assert len(live) == {0: 0, 2: 1, 3: 1, 130: 5}[steps]  # 130 steps: events of 30, 6, 14, 50, 30
