"""How the §4.5 benchmark reads its curves: crossings off the interpolated curve, matched inputs,
the intervals over resampled streams, the oracle segmentation, and the alignment of annotations
with decodes."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.decoding_curves import (
    average_curves,
    bootstrap_reduction,
    crossing_rate,
    paired_differences,
    reduction_at,
)
from benchmarks.selective_decoding import decodes_at, oracle_point, score_aligned, sweep_rates


def curve(points: list[tuple[float, float]]) -> list[dict]:
    return [{"decodes": int(r * 100), "rate_hz": r, "cider": c} for r, c in points]


def test_crossing_is_read_off_the_log_rate_interpolation():
    points = curve([(1.0, 4.0), (0.1, 2.0), (0.4, 3.0)])  # any order
    assert crossing_rate(points, 3.0) == pytest.approx(0.4)
    assert crossing_rate(points, 3.5) == pytest.approx((0.4 * 1.0) ** 0.5)  # half-way in log-rate
    assert crossing_rate(points, 1.0) == pytest.approx(0.1)  # reached at the lowest rate swept
    assert crossing_rate(points, 4.5) is None


def test_reduction_compares_adaptive_with_uniform_decoding_the_same_input():
    uniform = curve([(0.1, 1.0), (0.25, 2.0), (1.0, 3.0)])
    curves = {"uniform/exact": uniform, "uniform/pooled": curve([(0.1, 1.0), (0.25, 2.5), (1.0, 3.5)]),
              "adaptive/exact": curve([(0.1, 2.0), (0.25, 3.0), (1.0, 3.0)]),
              "adaptive/pooled": curve([(0.1, 2.0), (0.25, 3.0), (1.0, 3.2)])}
    result = reduction_at(curves, 1.0)
    assert result["adaptive/exact"]["uniform_cider"] == pytest.approx(3.0)
    assert result["adaptive/exact"]["reduction"] == pytest.approx(4.0)  # 3.0 reached at 0.25 Hz
    assert result["adaptive/pooled"]["uniform_cider"] == pytest.approx(3.5)
    assert result["adaptive/pooled"]["reduction"] is None  # never reaches uniform's 3.5


def test_streams_average_point_by_point_and_rates_cover_the_papers_range():
    a = {"uniform/exact": curve([(1.0, 2.0), (0.5, 1.0)])}
    b = {"uniform/exact": curve([(1.0, 4.0), (0.5, 3.0)])}
    assert [p["cider"] for p in average_curves([a, b])["uniform/exact"]] == [3.0, 2.0]
    rates = sweep_rates(2.0)
    assert rates[0] == pytest.approx(2.0) and rates[-1] == pytest.approx(0.01) and rates == sorted(rates, reverse=True)
    assert decodes_at(2.0, 100.0, 150) == 150  # never more decodes than steps
    assert decodes_at(0.001, 100.0, 150) == 1


def stream(adaptive_exact: list[tuple[float, float]], uniform_exact: list[tuple[float, float]]) -> dict:
    """A stream's four curves; pooled = exact, enough to test the statistics."""
    return {"uniform/exact": curve(uniform_exact), "uniform/pooled": curve(uniform_exact),
            "adaptive/exact": curve(adaptive_exact), "adaptive/pooled": curve(adaptive_exact)}


UNIFORM = [(1.0, 3.0), (0.25, 2.0), (0.1, 1.0)]


def test_identical_streams_leave_no_doubt_about_the_reduction():
    streams = [stream([(1.0, 3.0), (0.25, 3.0), (0.1, 2.0)], UNIFORM)] * 5
    interval = bootstrap_reduction(streams, 1.0, draws=50)["adaptive/exact"]
    assert interval["low"] == interval["median"] == interval["high"] == pytest.approx(4.0)
    assert interval["share_reaching_paper"] == 1.0


def test_streams_that_disagree_widen_the_interval():
    reaching = stream([(1.0, 3.5), (0.25, 3.5), (0.1, 3.5)], UNIFORM)  # reaches uniform's 3.0 at 0.1 Hz: 10x
    never = stream([(1.0, 2.0), (0.25, 2.0), (0.1, 1.0)], UNIFORM)  # below 3.0 everywhere
    interval = bootstrap_reduction([reaching, never] * 4, 1.0, draws=400)["adaptive/exact"]
    assert interval["low"] < 2.85 < interval["high"]  # resamplings rich in `never` miss, others reach
    assert 0.05 < interval["share_reaching_paper"] < 0.95


def test_paired_gap_interval_excludes_zero_only_when_every_stream_agrees():
    ahead = [stream([(1.0, 3.2), (0.25, 2.5), (0.1, 1.0)], UNIFORM) for _ in range(6)]
    gaps = paired_differences(ahead, draws=200)["adaptive-uniform/exact"]
    assert [g["rate_hz"] for g in gaps] == pytest.approx([1.0, 0.25, 0.1])
    assert gaps[0]["difference"] == pytest.approx(0.2) and gaps[0]["low"] == pytest.approx(0.2)
    assert gaps[2]["difference"] == pytest.approx(0.0)
    mixed = ahead[:3] + [stream([(1.0, 2.8), (0.25, 1.5), (0.1, 1.0)], UNIFORM) for _ in range(3)]
    first = paired_differences(mixed, draws=400)["adaptive-uniform/exact"][0]
    assert first["difference"] == pytest.approx(0.0, abs=1e-9) and first["low"] < 0 < first["high"]


def test_oracle_decodes_once_at_each_annotated_event_centre():
    captions = ["a red circle moves left", "a blue square moves up", "a green triangle spins"]
    annotations = [{"start": 0.0, "end": 4.0, "time": 2.0, "caption": captions[0]},
                   {"start": 4.0, "end": 6.0, "time": 5.0, "caption": captions[1]},
                   {"start": 6.0, "end": 10.0, "time": 8.0, "caption": captions[2]}]
    times = np.arange(1.0, 9.5, 0.5)  # window centres every 0.5 s
    event_of_step = np.searchsorted([4.0, 6.0], times, side="right")
    embeddings = np.eye(3)[event_of_step]  # a perfect stream: one direction per event
    decoded: list[int] = []

    def decode(chosen: np.ndarray) -> list[str]:  # reads the event off the embedding
        decoded.extend(chosen.argmax(axis=1).tolist())
        return [captions[i] for i in chosen.argmax(axis=1)]

    point = oracle_point(annotations, times, embeddings, decode)
    assert decoded == [0, 1, 2] and point["decodes"] == 3
    assert point["rate_hz"] == pytest.approx(3 / 10.0)
    shifted = np.eye(3)[np.searchsorted([3.0, 5.0], times, side="right")]  # boundaries 1 s early
    assert oracle_point(annotations, times, shifted, decode)["cider"] < point["cider"]


def test_each_annotation_is_scored_against_its_nearest_decode_and_its_distance_from_the_centre():
    annotations = [{"start": 0.0, "end": 4.0, "time": 2.0, "caption": "a red circle moves left"},
                   {"start": 4.0, "end": 10.0, "time": 7.0, "caption": "a blue square moves up"}]
    right = [(1.5, "a red circle moves left"), (8.0, "a blue square moves up")]
    point = score_aligned(annotations, right)
    assert point["centre_distance_s"] == pytest.approx((0.5 + 1.0) / 2)
    # one decode more, nearer the second centre but wrong: it, not the right one, is matched
    closer_but_wrong = score_aligned(annotations, right + [(6.5, "a red circle moves left")])
    assert closer_but_wrong["centre_distance_s"] == pytest.approx((0.5 + 0.5) / 2)
    assert closer_but_wrong["cider"] < point["cider"]


def test_averaged_curves_carry_every_measure_of_a_point():
    streams = [{"uniform/exact": [{"decodes": 10, "rate_hz": 1.0, "cider": c, "centre_distance_s": d}]}
               for c, d in ((3.0, 0.2), (4.0, 0.4))]
    (point,) = average_curves(streams)["uniform/exact"]
    assert point == pytest.approx({"decodes": 10, "rate_hz": 1.0, "cider": 3.5, "centre_distance_s": 0.3})
