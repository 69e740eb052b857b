"""The training datasets: a feature cache streamed through Ray Data, a pass at a time.

Each Ray Train worker iterates its streaming split of a pass (one Ray Data execution; by default
one epoch); the dataset is never loaded whole (a map task reads one file record batch by record
batch). Why not `read_parquet`: see ops.cache.files.

Epochs per pass (`--epochs-per-pass`, default 1): a longer pass saves the restart between epochs
(~0.2 s), but Ray Data reads a pass ahead as fast as it can, and on a CPU node where the step's
OpenMP threads hold every core that read-ahead stalls the step for far longer than it saves
(measured on 2 cores, demo cache: 3 epochs per pass cost 2-3 logging windows at ~25 samples/s
at each pass start, against ~120). Raise it where the readers have spare cores (GPU nodes).
"""

from __future__ import annotations

import dataclasses

from ops.cache.files import CacheFileReader, CacheSource, pass_items

TRAIN_COLUMNS = ("s_v", "s_v_shape", "target", "query", "task", "media_kind")
MAX_READ_BLOCKS = 1000  # read tasks per pass, at most
FILES_PER_READ_TASK = 8  # fewer, longer read tasks: each one is a scheduling round trip at a restart


def read_blocks(files: int, cluster_cpus: float) -> int:
    """Read tasks for a pass of `files` file items: a task reads several files in turn (measured
    on the demo cache's 17 files: a restart takes 0.28 s with a task per file, 0.15 s with 2-4
    tasks), but never fewer tasks than the cluster has CPUs to run them, nor more than files."""
    wanted = max(-(-files // FILES_PER_READ_TASK), int(cluster_cpus))
    return max(1, min(files, MAX_READ_BLOCKS, wanted))


def read_pass(sources: list[CacheSource], columns: tuple[str, ...], epochs: int, seed: int):
    """One pass over `sources` as a streaming Ray Dataset: `epochs` epochs, each in its own seeded
    file order, rows with `replay` and `epoch` columns."""
    import ray

    items = pass_items(sources, epochs, seed)  # raises if a source holds no feature cache
    reader = CacheFileReader(tuple(sources), tuple(columns), seed)
    blocks = read_blocks(len(items), ray.cluster_resources().get("CPU", 1))
    # batch_size=None: a task reads the items of its block, one file after another
    return ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        reader, batch_size=None, batch_format="numpy")


def count_rows(source: CacheSource) -> int:
    """Rows of the source a stage would read (one epoch); reads only the two filter columns."""
    return read_pass([source], ("media_kind", "task"), epochs=1, seed=0).count()


def stage_rows(source: CacheSource) -> int:
    """count_rows from the cache's manifest (its markers count rows by kind; an old shard's file is
    read for its two filter columns: ops.cache.files.selected_row_count); a pass over the files
    only for a manifest with no shards. A source `counted` already is not read again."""
    from ops.cache.files import selected_row_count

    if source.rows is not None:
        return source.rows
    rows, _ = selected_row_count(source.url, source.media_kinds, source.tasks)
    return count_rows(source) if rows is None else rows


def counted(sources: list[CacheSource]) -> list[CacheSource]:
    """The sources with their rows counted once: weighting, the replay share and the epoch's
    summary all need them (a manifest request each on S3, a pass over an old cache's files)."""
    return [dataclasses.replace(source, rows=stage_rows(source)) for source in sources]


def weighted(sources: list[CacheSource], weights: list[float]) -> list[CacheSource]:
    """Each source read `keep` times over so that it makes its weight's share of an epoch, an epoch
    holding as many rows as the sources together (a small source is repeated, a large one
    subsampled, each read drawing its own seeded subset)."""
    sources = counted(sources)
    rows = [stage_rows(source) for source in sources]
    total, weight_sum = sum(rows), sum(weights)
    for source, count, weight in zip(sources, rows, weights):
        if count == 0:
            raise ValueError(f"--cache-weights gives {source.url} a share, but it holds no rows this stage trains on")
    return [dataclasses.replace(source, keep=weight / weight_sum * total / count)
            for source, count, weight in zip(sources, rows, weights)]


def announce_mix(verb: str, sources: list[CacheSource]) -> None:
    """One line saying what an epoch holds when it reads more than one cache: each cache's rows
    and, where a weight changes it, how many times over they are read."""
    if len(sources) < 2:
        return
    parts = [f"{source.url} {'replayed ' if source.replay else ''}{stage_rows(source)} rows"
             + ("" if source.keep == 1.0 else f" read x{source.keep:.2f}") for source in sources]
    per_epoch = sum(stage_rows(source) * source.keep for source in sources)
    print(f"{verb}: {len(sources)} caches as one dataset, ~{per_epoch:.0f} rows per epoch: {'; '.join(parts)}")


def stage_sources(config) -> list[CacheSource]:
    """A TrainConfig's caches: its stage's rows of each training cache (in their --cache-weights
    shares, else each by its size), plus replayed pretraining rows mixed by weight."""
    kinds = tuple(config.spec.media_kinds)
    main = [CacheSource(url, kinds, tuple(config.spec.tasks)) for url in config.cache]
    replaying = bool(config.replay_cache and config.replay_weight > 0)
    if len(main) > 1 or replaying:
        main = counted(main)
    if config.cache_weights:
        main = weighted(main, config.cache_weights)
    if not replaying:
        return main
    [replay] = counted([CacheSource(config.replay_cache, kinds, ("caption",), replay=True)])
    main_rows, replay_rows = sum(stage_rows(source) for source in main), stage_rows(replay)
    # replayed share w of the mix: replay_rows * f = w / (1 - w) * main_rows
    fraction = config.replay_weight / (1 - config.replay_weight) * main_rows / max(replay_rows, 1)
    if fraction > 1:
        print(f"train: only {replay_rows} replay rows for a {config.replay_weight:.0%} share; using all of them")
    return [*main, dataclasses.replace(replay, keep=min(1.0, fraction))]


def build_train_dataset(config):
    sources = stage_sources(config)
    announce_mix("train", sources)
    return read_pass(sources, TRAIN_COLUMNS, config.epochs_per_pass, config.seed)


# the Y-decoder learns from every cached caption, image and video
DECODER_MEDIA_KINDS, DECODER_TASKS = ("image", "video"), ("caption",)


def build_decoder_dataset(config):
    """Every cached caption of the run's caches; S_V too when the decoder learns from Ŝ_Y."""
    columns = ("target", "task", "media_kind") + (("s_v", "s_v_shape") if config.mode == "predicted" else ())
    sources = [CacheSource(url, DECODER_MEDIA_KINDS, DECODER_TASKS) for url in config.cache]
    if len(sources) > 1:
        sources = counted(sources)
    if config.cache_weights:
        sources = weighted(sources, config.cache_weights)
    announce_mix("train-decoder", sources)
    return read_pass(sources, columns, config.epochs_per_pass, config.seed)
