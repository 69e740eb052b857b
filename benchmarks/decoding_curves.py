"""Reading the §4.5 curves: crossings, reductions, the average over streams, and how sure we are.

A curve is a list of {"decodes", "rate_hz", "cider", ...} points, one per swept rate; a stream's
curves map "uniform/exact", "uniform/pooled", "adaptive/exact", "adaptive/pooled" to curves swept
over the same rates. The paper's headline is read off the curves averaged over streams; the
bootstrap here resamples the streams to say how much of that headline the choice of streams
decides: at a plateau, a few hundredths of CIDEr move the crossing a long way.
"""

from __future__ import annotations

import numpy as np

VARIANTS = ("pooled", "exact")


def crossing_rate(points: list[dict], target: float) -> float | None:
    """The lowest rate at which a curve reaches `target`: its first upward crossing, read off the
    curve linearly interpolated in log-rate (as one reads it off the plot), not the sweep grid."""
    points = sorted(points, key=lambda p: p["rate_hz"])
    for i, point in enumerate(points):
        if point["cider"] >= target:
            if i == 0:
                return point["rate_hz"]
            low = points[i - 1]
            share = (target - low["cider"]) / (point["cider"] - low["cider"])
            return float(np.exp(np.log(low["rate_hz"]) + share * (np.log(point["rate_hz"]) - np.log(low["rate_hz"]))))
    return None


def reduction_at(curves: dict, rate: float) -> dict:
    """For each decoding input (exact midpoint, pooled segment): uniform's CIDEr at `rate`
    (interpolated in log-rate) and the lowest adaptive rate reaching it with the same input."""
    result = {"reference_rate_hz": rate}
    for variant in VARIANTS:
        uniform = sorted(curves[f"uniform/{variant}"], key=lambda p: p["rate_hz"])  # np.interp: ascending
        target = float(np.interp(np.log(rate), np.log([p["rate_hz"] for p in uniform]), [p["cider"] for p in uniform]))
        reached = crossing_rate(curves[f"adaptive/{variant}"], target)
        result[f"adaptive/{variant}"] = {"uniform_cider": target, "rate_hz": reached,
                                         "reduction": rate / reached if reached else None}
    return result


def _as_arrays(per_stream: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """{name: {key: (streams, points)}} for every key of a point: resampling as indexing."""
    return {name: {key: np.array([[p[key] for p in curves[name]] for curves in per_stream])
                   for key in per_stream[0][name][0]} for name in per_stream[0]}


def _mean_curves(arrays: dict[str, dict[str, np.ndarray]], streams: np.ndarray) -> dict:
    """The chosen streams' curves averaged point by point (same swept rate)."""
    curves = {}
    for name, columns in arrays.items():
        means = {key: values[streams].mean(axis=0) for key, values in columns.items()}
        curves[name] = [{key: float(mean[i]) for key, mean in means.items()} for i in range(len(means["cider"]))]
    return curves


def average_curves(per_stream: list[dict]) -> dict:
    """The streams' curves averaged point by point (same swept rate): the paper's average CIDEr."""
    return _mean_curves(_as_arrays(per_stream), np.arange(len(per_stream)))


def _percentiles(values: np.ndarray) -> dict:
    low, median, high = np.percentile(values, [2.5, 50, 97.5])
    return {"low": float(low), "median": float(median), "high": float(high)}


def bootstrap_reduction(per_stream: list[dict], rate: float, draws: int = 1000, seed: int = 0,
                        paper: float = 2.85) -> dict:
    """The reduction at `rate` over `draws` resamplings of the streams (with replacement):
    its 2.5 / 50 / 97.5 percentiles and the share of resamplings reaching the paper's figure.
    A resampling whose adaptive curve never reaches uniform's score counts as a reduction of 0."""
    arrays, rng, streams = _as_arrays(per_stream), np.random.default_rng(seed), len(per_stream)
    reductions = {variant: [] for variant in VARIANTS}
    for _ in range(draws):
        pick = rng.integers(streams, size=streams)
        result = reduction_at(_mean_curves(arrays, pick), rate)
        for variant in VARIANTS:
            reductions[variant].append(result[f"adaptive/{variant}"]["reduction"] or 0.0)
    return {f"adaptive/{variant}": {**_percentiles(np.array(values)),
                                    "share_reaching_paper": float(np.mean(np.array(values) >= paper))}
            for variant, values in reductions.items()}


def paired_differences(per_stream: list[dict], draws: int = 1000, seed: int = 0) -> dict:
    """Adaptive minus uniform CIDEr at each swept rate, per decoding input: the mean over streams
    and its 95% bootstrap interval. Both strategies decode the same streams, so the difference is
    paired per stream, and an interval that excludes 0 is a gap the choice of streams does not explain."""
    arrays, rng = _as_arrays(per_stream), np.random.default_rng(seed)
    picks = rng.integers(len(per_stream), size=(draws, len(per_stream)))
    result = {}
    for variant in VARIANTS:
        gap = arrays[f"adaptive/{variant}"]["cider"] - arrays[f"uniform/{variant}"]["cider"]  # (streams, points)
        resampled = gap[picks].mean(axis=1)  # (draws, points)
        rates = arrays[f"uniform/{variant}"]["rate_hz"].mean(axis=0)
        result[f"adaptive-uniform/{variant}"] = [
            {"rate_hz": float(r), "difference": float(g), **{k: v for k, v in _percentiles(resampled[:, i]).items() if k != "median"}}
            for i, (r, g) in enumerate(zip(rates, gap.mean(axis=0)))]
    return result
