"""Text-to-video retrieval on Ray: the index is a LanceDB table (ops/retrieval/table.py).

    index_build  `vljepa index-build`: feature caches -> Ŝ_Y on an actor pool (Ray Data) -> the
                 table, re-runs adding only what changed; its ANN index once the table is large enough
    deployment   the RetrievalIndex Serve deployment: opens the table (never fills it), searches,
                 lists, adds and deletes over HTTP, compacts in the background, exports its metrics
"""
