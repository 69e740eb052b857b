"""Synthetic retrieval index tables for tests: real LanceDB tables on disk (or S3), in the schema
`vljepa index-build` writes, with vectors a test chooses."""

from __future__ import annotations

import numpy as np

from ops.retrieval.table import TABLE_NAME, VECTOR_COLUMN, connect, rows_table, table_schema


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered(n: int, dim: int, clusters: int, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """Unit vectors around `clusters` random centres, as embeddings of videos of a few kinds are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return unit_rows(centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def write_table(uri: str, vectors: np.ndarray, ids: list[str] | None = None, fingerprint: str = "test-model",
                captions: list[str | None] | None = None, sources: list[str | None] | None = None,
                partitions: int | None = None, ann_index: str = "ivf_rq", sub_vectors: int | None = None):
    """A new index table at the database `uri` holding `vectors` (float16, as index-build stores
    them); with `partitions`, an ANN index of that many partitions over them (index-build's
    default type unless told)."""
    from ops.retrieval.table import ann_config

    n, width = vectors.shape
    ids = ids if ids is not None else [f"item-{i:06d}" for i in range(n)]
    schema = table_schema(width, fingerprint)
    table = connect(uri).create_table(TABLE_NAME, schema=schema, data=rows_table(
        schema, ids, ["video"] * n, captions or [None] * n, sources or [None] * n, vectors))
    if partitions:
        table.create_index(VECTOR_COLUMN, config=ann_config(ann_index, partitions, sub_vectors))
    return table


def exact_ranking(vectors: np.ndarray, ids: list[str], query: np.ndarray) -> list[tuple[str, float]]:
    """(id, cosine) of every stored item, best first, equal scores by id: one numpy product over
    the vectors as the table holds them (float16), with the query as LanceDB takes it (cast to the
    column's float16)."""
    stored = unit_rows(vectors.astype(np.float16).astype(np.float64))
    query = query.astype(np.float16).astype(np.float64)
    scores = stored @ (query / np.linalg.norm(query))
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    return [(ids[i], float(scores[i])) for i in order]
