"""Text-to-video retrieval over a LanceDB table of predicted embeddings Ŝ_Y (Ray-free).

    table        the index table: its schema (id, kind, caption, source, vector), the model's
                 fingerprint in its metadata, opening it (local or s3://) with clear errors,
                 searching it (cosine, prefix filter, equal scores ranked by id) and listing it
    cache_items  which feature-cache rows an index holds: their ids (<cache name>/<shard>/<key>),
                 and what a build must predict, keep or drop
    predictor    the Ray Data stage of `vljepa index-build`: cached S_V -> Ŝ_Y rows of the table

The engine is LanceDB (its ANN indexes, versions, compaction and object-store support); nothing
here re-implements it.
"""
