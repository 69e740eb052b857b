"""Media and shards (Ray-free).

    samples       raw webdataset members -> a typed sample; errors: why a sample is refused
    shards        tar shards: resolve sources (dir, glob, brace, s3://), read robustly, write
    stages        the row stages feature caching composes: parse a shard, decode a sample
    frames        media bytes -> sampled, resized, centre-cropped uint8 frames; preprocess: the indices
    media_input   a request's bytes -> frames, with the reasons a request is refused
    media_encode  frames -> real H.264 / JPEG / PNG files
    make_shards   a folder, CSV or JSONL of the user's media -> shards
    sample_data   the embedded sample dataset (scenes, hard-negative triplets, long streams)
"""
