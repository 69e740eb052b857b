"""A training checkpoint's files: the state, and beside it a small record of its step and size.

A checkpoint directory (what Ray Train uploads, to a local run or to S3) holds `STATE_FILE`, the
torch.save of the loop's state, and `STATE_RECORD`, `{"step": N, "state_bytes": size}`. The state
of a paper-size run is ~10 GB (792M trainable weights and AdamW's two moments in float32), so:
  - `latest_checkpoint` picks the highest step from one listing and the records alone. A state
    whose size differs from its record is a half-written upload (a worker or node killed
    mid-upload; Ray Train never registered it) and is skipped. A checkpoint from before the
    records is still read whole to learn its step, as all were before.
  - `local_checkpoint` fetches a remote checkpoint's state, a block at a time, into a temporary
    directory that is removed when the export is done (it used to stay in /tmp, ~10 GB an export).
  - `load_state` maps the file rather than reading it: an export touches the weights only, so the
    optimizer's moments, two thirds of the file, are never read into memory.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from pipelines.train.config import STATE_FILE

STATE_RECORD = "state.json"
FETCH_BLOCK_BYTES = 32 * 2**20  # one ranged read of a remote state: memory bounded whatever its size


def write_state(state: dict, directory: Path) -> None:
    """The state and its record, into a checkpoint directory about to be reported."""
    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    record = {"step": int(state["step"]), "state_bytes": path.stat().st_size}
    (Path(directory) / STATE_RECORD).write_text(json.dumps(record))


def load_state(directory: str | Path) -> dict:
    """A local checkpoint's state, its tensors mapped from the file (read only where used)."""
    return torch.load(Path(directory) / STATE_FILE, mmap=True, weights_only=False)


def _is_local(fs) -> bool:
    return "file" in fs.protocol or "local" in fs.protocol


def latest_checkpoint(run_dir: str | Path, storage: str | None = None) -> str:
    """The run's highest-step readable checkpoint directory: a local path, or a URL under --storage."""
    import fsspec

    root = storage or str(Path(run_dir) / "ray")
    fs, path = fsspec.core.url_to_fs(root)
    states = fs.glob(f"{path.rstrip('/')}/**/{STATE_FILE}", detail=True)
    if not states:
        raise ValueError(f"{run_dir} holds no training checkpoint (looked under {root})")
    record_paths = [state_path.rsplit("/", 1)[0] + f"/{STATE_RECORD}" for state_path in states]
    records = fs.cat(record_paths, on_error="omit")  # one batched read; a missing record is left out

    def step(state_path: str, size: int) -> int | None:
        directory = state_path.rsplit("/", 1)[0]
        record = records.get(f"{directory}/{STATE_RECORD}")  # cat's keys: paths as the glob gave them
        try:
            if record is not None:
                saved = json.loads(record)
                if int(saved["state_bytes"]) != size:
                    raise EOFError(f"{STATE_FILE} holds {size} bytes, its record says {saved['state_bytes']}")
                return int(saved["step"])
            if _is_local(fs):  # from before the records: mapped, so only the step is read
                return int(load_state(directory)["step"])
            with fs.open(state_path, "rb") as handle:  # from before the records, remote: read whole
                return int(torch.load(handle, weights_only=False)["step"])
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, KeyError, TypeError) as exc:
            print(f"export: skipping unreadable checkpoint {directory} ({type(exc).__name__}: {exc})", file=sys.stderr)
            return None

    readable = {state_path.rsplit("/", 1)[0]: found for state_path, info in states.items()
                if (found := step(state_path, int(info["size"]))) is not None}
    if not readable:
        raise ValueError(f"{run_dir} holds no readable training checkpoint (looked under {root})")
    best = max(readable, key=readable.__getitem__)
    return best if _is_local(fs) else fs.unstrip_protocol(best)


@contextmanager
def local_checkpoint(directory: str) -> Iterator[Path]:
    """`directory` on this machine: a local one as it is, a remote one's state fetched into a
    temporary directory removed on exit."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(directory)
    if _is_local(fs):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="vljepa-checkpoint-") as local:
        # Block by block: s3fs's get() held as much as the whole object in memory at once (measured
        # on loopback: docs/benchmarks.md), ~10 GB at paper size.
        with (fs.open(f"{path}/{STATE_FILE}", "rb", block_size=FETCH_BLOCK_BYTES, cache_type="none") as source,
              open(Path(local) / STATE_FILE, "wb") as target):
            shutil.copyfileobj(source, target, FETCH_BLOCK_BYTES)
        yield Path(local)
