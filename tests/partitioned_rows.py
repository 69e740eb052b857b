"""Unit embeddings in a few clusters, the shape a partitioned index shard is tested on, and the
check that each item sits in the list of its nearest centroid."""

from __future__ import annotations

import numpy as np


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(count: int, seed: int, width: int = 16) -> np.ndarray:
    """`count` unit rows around 6 random directions."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(6, width)))
    return unit(centres[rng.integers(0, 6, count)] + 0.3 * rng.normal(size=(count, width)))


def filed_under_nearest(index) -> bool:
    """Whether every item of a partitioned VectorIndex is in the list of its nearest centroid."""
    return all(block == int(np.argmax(index.centroids @ index.blocks[block].matrix[slot]))
               for block, slot in index.places.values())
