"""How the §4.5 benchmark reads its curves: crossings off the interpolated curve, matched inputs."""

from __future__ import annotations

import pytest

from benchmarks.selective_decoding import average_curves, crossing_rate, decodes_at, reduction_at, sweep_rates


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
