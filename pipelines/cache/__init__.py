"""Feature caching on Ray Data.

    cache_features  `vljepa cache-features`: shards -> parse -> decode -> x-encoder actors -> cache
    commits         each shard committed by a task once its last row is featurised; the caching
                    job's Prometheus metrics
"""
