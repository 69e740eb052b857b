"""Shards on Ray Data.

    make_shards  `vljepa make-shards`: a folder, CSV or JSONL of media -> shards
    sample_data  `vljepa sample-data`: the embedded sample dataset
"""
