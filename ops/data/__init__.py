"""Media and shards (Ray-free).

    samples       raw webdataset members -> a typed sample; SampleError: why a sample is refused
    shards        tar shards: resolve sources (dir, glob, brace, s3://), read robustly, write
    stages        the row stages feature caching composes: parse a shard, decode a sample
    frames        media bytes -> sampled, resized, centre-cropped uint8 frames (a request's too, with
                  the reasons it is refused), and frames -> real H.264 / JPEG / PNG files
    preprocess    which frames to sample, and the resize + centre crop
    make_shards   a folder, CSV or JSONL of the user's media -> shards
    sample_data   the embedded sample dataset and its hard-negative text triplets (scenes: what it
                  draws; long_stream: the long videos of selective decoding)
"""
