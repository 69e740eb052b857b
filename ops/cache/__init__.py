"""The feature cache (Ray-free).

    feature_cache  one Parquet file per shard, a report, markers, a manifest and its fingerprint
    parquet        bounded row groups written as a stream, read back a group at a time
    files          a cache's files as a training stage's rows; reading chosen rows
    commit         one shard's rows -> its files and marker
    featurize      the frozen x-encoder as a batch callable for an actor pool
"""
