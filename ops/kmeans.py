"""Spherical k-means for the retrieval index's partition (ops/vector_index.py): centroids of unit
embeddings, compared by dot product, the index's own similarity.

Design choices:
- numpy only: an index replica imports no torch and no scikit-learn (each adds hundreds of MB to
  every shard's resident memory for one call at build time).
- Lloyd's iterations on a sample of the rows, at most SAMPLE_PER_CENTROID per centroid (faiss
  warns below 39): the centroids settle on a sample that size, while an iteration's cost and the
  sample's memory grow with it (4096 centroids x 64 rows of 1536-d: 1.6 GB). Assigning every row
  afterwards is one more pass (`nearest`).
- Spherical: a centroid is its members' mean scaled back to unit length, so that the nearest
  centroid by dot product is the list whose members a query scores highest on average.
- Seeds drawn by greedy k-means++ (`plus_plus_seeds`), which Lloyd's iterations then refine.
- An emptied centroid is reseeded with the sample row its centroid fits worst, so every list keeps
  members and no probe is wasted on an empty one.
- Seeded: the same rows give the same centroids, so an index built twice searches the same way.
"""

from __future__ import annotations

import numpy as np

SAMPLE_PER_CENTROID = 64
SEEDING_PER_CENTROID = 8  # k-means++ picks its seeds among this many sample rows per centroid
ITERATIONS = 12
CHUNK_ROWS = 16384  # rows scored against the centroids at once: (CHUNK_ROWS, centroids) float32, 256 MB at 4096
# The same for a build running beside a shard's searches (pipelines/index_upkeep.py): BLAS calls from
# two threads queue behind each other and share the cores, so a search waited for the build's whole
# product. 16384 x 1024 centroids x 1536-d takes 0.35 s on 2 cores, and an exact search over 100k
# rows beside such products took 483 ms (median; 1.3 s at worst) instead of 18; beside products of
# 1024 rows (25 ms each, as efficient per row), 57 ms.
BESIDE_SEARCHES_ROWS = 1024


def nearest(vectors: np.ndarray, centroids: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """(N, D), (C, D) -> (N,) int64: each vector's centroid of highest dot product, in chunks so
    that the (N, C) scores never sit in memory whole (10M rows x 4096 centroids: 160 GB).
    chunk_rows: rows per product (smaller for a build beside searches: see BESIDE_SEARCHES_ROWS)."""
    return nearest_with_scores(vectors, centroids, chunk_rows)[0]


def nearest_with_scores(vectors: np.ndarray, centroids: np.ndarray,
                        chunk_rows: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    labels = np.empty(len(vectors), dtype=np.int64)
    best = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), chunk_rows):
        scores = vectors[start:start + chunk_rows] @ centroids.T  # (chunk, C)
        labels[start:start + chunk_rows] = scores.argmax(axis=1)
        best[start:start + chunk_rows] = scores[np.arange(len(scores)), labels[start:start + chunk_rows]]
    return labels, best


def members_by_cluster(labels: np.ndarray, clusters: int) -> list[np.ndarray]:
    """Each vector's cluster -> for each cluster, the indices of its vectors, in index order."""
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=clusters))])
    return [order[bounds[c]:bounds[c + 1]] for c in range(clusters)]


def member_sums(vectors: np.ndarray, labels: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """-> ((clusters, D) sum of each cluster's vectors, (clusters,) member counts). Summed a
    cluster at a time over its members: np.add.at is 10x slower, a one-hot product as slow as a pass."""
    sums = np.zeros((clusters, vectors.shape[1]), dtype=np.float32)
    members = members_by_cluster(labels, clusters)
    for cluster, rows in enumerate(members):
        if len(rows):
            sums[cluster] = vectors[rows].sum(axis=0)
    return sums, np.array([len(rows) for rows in members])


def plus_plus_seeds(vectors: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's variant): at each step
    2 + log(clusters) candidates are drawn with probability proportional to their squared distance
    from the seeds so far, and the one that brings the rows nearest their seeds is kept. Seeded at
    random instead, Lloyd's iterations often keep two planted clusters in one centroid and split
    another (tests/unit/test_index_partition.py). Draws among a subsample: a step is one product of
    the subsample with the candidates."""
    pool = vectors[rng.choice(len(vectors), min(len(vectors), SEEDING_PER_CENTROID * clusters), replace=False)]
    trials = 2 + int(np.log(clusters))
    seeds = np.empty((clusters, vectors.shape[1]), dtype=np.float32)
    seeds[0] = pool[rng.integers(len(pool))]
    distance = np.maximum(2 - 2 * (pool @ seeds[0]), 0)  # squared distance of unit vectors to the nearest seed
    for c in range(1, clusters):
        cumulative = np.cumsum(distance, dtype=np.float64)
        if cumulative[-1] > 0:
            drawn = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
            drawn = np.minimum(drawn, len(pool) - 1)
        else:  # every row sits on a seed already: any will do
            drawn = rng.integers(len(pool), size=trials)
        with_each = np.minimum(distance[:, None], np.maximum(2 - 2 * (pool @ pool[drawn].T), 0))  # (pool, trials)
        best = int(with_each.sum(axis=0).argmin())
        seeds[c], distance = pool[drawn[best]], with_each[:, best]
    return seeds


def sample_positions(count: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """The rows (sorted positions among `count`) Lloyd's iterations learn `clusters` centroids from:
    at most SAMPLE_PER_CENTROID per centroid."""
    return np.sort(rng.choice(count, min(count, clusters * SAMPLE_PER_CENTROID), replace=False))


def spherical_kmeans(vectors: np.ndarray, clusters: int, seed: int = 0,
                     iterations: int = ITERATIONS, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """(N, D) unit rows -> (clusters, D) unit centroids. N must be at least `clusters`.
    chunk_rows: rows per product (nearest)."""
    if not 1 <= clusters <= len(vectors):
        raise ValueError(f"{clusters} centroids from {len(vectors)} vectors: need 1 <= centroids <= vectors")
    rng = np.random.default_rng(seed)
    sample = vectors[sample_positions(len(vectors), clusters, rng)].astype(np.float32, copy=False)
    centroids = plus_plus_seeds(sample, clusters, rng)
    for _ in range(iterations):
        labels, fit = nearest_with_scores(sample, centroids, chunk_rows)
        sums, counts = member_sums(sample, labels, clusters)
        empty = np.flatnonzero(counts == 0)
        if len(empty):  # reseed with the rows worst served by their centroid, one per empty list
            worst = np.argsort(fit)[: len(empty)]
            sums[empty] = sample[worst]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids).astype(np.float32)
    return centroids
