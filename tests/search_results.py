"""Comparing two searches' answers: the same items, in the same order, with the same metadata, and
scores equal to float32 rounding. Not bit for bit: BLAS sums a dot product in an order that
depends on the kernel it picks for the matrix's size and alignment and on the CPU (a row's score
moved in the last bit between a 3-shard and a 2-shard layout of the same items on one VM), and a
matrix-matrix product (several queries at once) sums in another order than a matrix-vector one."""

from __future__ import annotations

import numpy as np


def assert_same_results(found: list[dict], expected: list[dict], context: object = None) -> None:
    assert [{**r, "score": None} for r in found] == [{**r, "score": None} for r in expected], context
    assert np.allclose([r["score"] for r in found], [r["score"] for r in expected], rtol=0, atol=1e-5), context
