"""cache-features' status table before a run: every shard when few, a summary when many."""

from pipelines.cache.cache_features import status_table


def test_few_shards_are_all_listed():
    names = ["a", "b", "c"]
    text = status_table(names, {"a": "done", "b": "pending", "c": "stale"})
    assert [line.split()[0] for line in text.splitlines()[1:]] == names


def test_many_shards_list_the_first_not_done_and_count_the_rest():
    names = [f"s{i:05d}" for i in range(10_000)]
    status = {n: "done" if i % 100 else "pending" for i, n in enumerate(names)}
    text = status_table(names, status, limit=40)
    lines = text.splitlines()
    assert len(lines) == 1 + 40 + 1
    assert all(line.split()[1] == "pending" for line in lines[1:41])
    assert lines[1].split()[0] == "s00000" and lines[40].split()[0] == "s03900"
    assert lines[-1].startswith("... 9960 more shards not listed")
