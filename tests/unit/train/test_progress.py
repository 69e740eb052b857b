"""Rank 0's progress lines: every field, steps and elapsed time increasing, the ETA falling to 0."""

import re

import pipelines.train.worker as worker
from pipelines.train.worker import Progress

LINE = re.compile(r"train: step +(\d+)/20 epoch (\d+) loss ([\d.]+) lr ([\d.e+-]+) grad ([\d.e+-]+) "
                  r"([\d.]+) samples/s elapsed (\d+):(\d\d):(\d\d) eta (\d+):(\d\d):(\d\d)$")


def seconds(h, m, s) -> int:
    return int(h) * 3600 + int(m) * 60 + int(s)


def test_one_line_per_window_with_every_field(capfd, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(worker.time, "perf_counter", lambda: now[0])  # 10 s a step
    progress = Progress("train", total_steps=20, start_step=4, rank=0)  # a restart from step 4
    for step in range(8, 21, 4):
        now[0] += 40.0
        progress.window(step, {"epoch": step // 10, "loss": 1.0 / step, "lr": 1e-4, "grad_norm": 0.5,
                               "samples_per_s": 32.0})
    progress.checkpoint(20)
    progress.evaluation(20, {"eval.retrieval.r1": 0.5, "eval.vqa.accuracy": 0.25})
    lines = capfd.readouterr().out.splitlines()
    parsed = [LINE.match(line) for line in lines[:4]]
    assert all(parsed), lines
    steps = [int(m.group(1)) for m in parsed]
    assert steps == [8, 12, 16, 20]
    assert [float(m.group(3)) for m in parsed] == [round(1 / s, 4) for s in steps]
    assert [seconds(*m.groups()[6:9]) for m in parsed] == [40, 80, 120, 160]
    assert [seconds(*m.groups()[9:12]) for m in parsed] == [120, 80, 40, 0]  # steps left x 10 s
    assert lines[4] == "train: checkpoint at step 20"
    assert lines[5] == "train: evaluation at step 20" and lines[6].split() == ["retrieval.r1", "0.5000"]


def test_only_rank_0_prints(capfd):
    progress = Progress("train-decoder", total_steps=5, start_step=0, rank=1)
    progress.window(1, {"epoch": 0, "loss": 1.0, "lr": 1e-3, "grad_norm": 1.0, "samples_per_s": 1.0})
    progress.checkpoint(1)
    assert capfd.readouterr().out == ""
