"""Does collation start OpenMP threads when it runs outside the training thread (as it does in
Ray Data's prefetch thread)? Prints one JSON object: OS threads added by collating a large batch in
a fresh thread, and, as a control, added by one large torch op in a fresh thread."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np
import torch

from model.build import build_vljepa
from model.presets import get_preset
from ops.train.collate import Collate


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def added_by(work, baseline: int) -> int:
    """OS threads alive in a fresh thread after `work` ran there, minus before (read inside the
    thread: libgomp ends a thread's pool when that thread exits)."""
    result = {}

    def run():
        before = os_threads()
        work()
        result["added"] = os_threads() - before

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    settle = time.monotonic() + 5.0  # let a pool that thread started wind down before the next count
    while os_threads() > baseline and time.monotonic() < settle:
        time.sleep(0.05)
    return result["added"]


def main(argv: list[str] | None = None) -> int:
    checkpoints = (argv if argv is not None else sys.argv[1:])[0]
    torch.set_num_threads(2)  # the training thread's setting (the worker sets its threads too)
    model = build_vljepa(get_preset("tiny", checkpoints))
    collate = Collate(model.target_tokenizer, model.query_tokenizer, 32, 32, use_query=True)
    rng = np.random.default_rng(0)
    rows = 64
    batch = {"s_v": np.array([rng.standard_normal(64 * 256).astype(np.float16) for _ in range(rows)] + [None],
                             dtype=object)[:-1],
             "s_v_shape": np.array([[64, 256]] * rows), "target": np.array(["a red ball moves left"] * rows),
             "query": np.array(["what moves?"] * rows), "task": np.array(["vqa"] * rows)}
    collate(batch)  # tokenizers warm, in the main thread
    torch.zeros(1 << 22).add_(1)  # the main thread's own pool exists, as the training thread's does
    baseline = os_threads()
    print(json.dumps({"collate": added_by(lambda: collate(batch), baseline),
                      "torch_op": added_by(lambda: torch.zeros(1 << 22).add_(1), baseline)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
