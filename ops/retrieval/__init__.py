"""Text-to-video retrieval over a LanceDB table of predicted embeddings Ŝ_Y (Ray-free).

    table        the index table: its schema (id, kind, caption, source, vector), the model's
                 fingerprint in its metadata, opening it (local or s3://) with clear errors,
                 searching it (cosine, prefix filter, equal scores ranked by id) and listing it
    cache_items  which feature-cache rows an index holds: their ids (<cache name>/<shard>/<key>),
                 what a build must predict, keep or drop, and reading the S_V of those it predicts

The engine is LanceDB (its ANN indexes, versions, compaction and object-store support); nothing
here re-implements it.
"""
