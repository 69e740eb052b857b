"""The retrieval index on disk: an append-only log of its changes in one directory, so a restarted
index (a Serve replica that died, moved node, or was redeployed) comes back with the items added
over HTTP. One JSON line per change; an add carries its embedding as base64 float32 (6 KB for a
1536-d embedding, where a JSON list of floats takes ~4x that).

Appending costs one short write per change, whatever the index's size (a snapshot per change would
rewrite every item). Opening replays the log and rewrites it with only the live items (atomically:
a temp file, then a rename), so it grows with the changes of one run, not of every run; a log
with nothing to drop (only adds of new ids since it was last compacted) is left as it is. A torn
last line (the process killed mid-write) is skipped and counted, never fatal.

A partitioned shard (`--index-lists`) keeps its centroids beside the log
(ops/index_partition_file.py) and each add line names its list and the build that list belongs
to, so a restart files every item where it was without building the partition again. A build
rewrites the log with every item's new list (as opening does).

A feature cache's items (`--index-cache`) are added again by every ingress at every start; one
deleted over HTTP leaves a tombstone, kept through compaction, so it stays deleted (until an
explicit add of the same id).

Single writer: each shard of the index is one replica (infra/serve_config.yaml), with a directory
of its own (ops/index_shards.py). The directory must be on a
volume the index's node sees after a restart (on a cluster: a shared volume).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ops.index_partition_file import SavedPartition, load_partition, remove_partition, save_partition
from ops.vector_index import VectorIndex

LOG_NAME = "index.jsonl"


MODEL_NAME = "model.json"  # beside the log: which model's predictions it holds


class WrongWidth(ValueError):
    """The log belongs to a model of another embedding width."""


def prediction_fingerprint(model_dir: str | Path) -> str:
    """What an item's Ŝ_Y depends on, as one digest: the x-encoder's identity (frozen, so its id and
    config hash name it) and the trained weights after it, the predictor's and the heads' files.
    A retrained model of the same shape gets another digest, so a store of its predictions is not
    mixed with a new model's. Reads the predictor's weights (~2 GB for the paper preset, ~2 s)."""
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "vljepa.json").read_text())
    digest = hashlib.sha256(json.dumps([manifest.get("x_encoder_identity"), manifest["config"]],
                                       sort_keys=True).encode())
    for path in [model_dir / "heads.safetensors", *sorted((model_dir / "predictor").glob("*.safetensors"))]:
        with path.open("rb") as weights:
            while chunk := weights.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def encode_embedding(embedding: np.ndarray) -> str:
    return base64.b64encode(np.asarray(embedding, dtype="<f4").tobytes()).decode()


def decode_embedding(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class IndexLog:
    def __init__(self, directory: str | Path, model: str | None = None):
        """model: the prediction_fingerprint of the model serving; a store written by another model
        is refused (ValueError), a new store records it. None: not checked (tests of the log alone)."""
        self.path = Path(directory) / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.skipped = 0  # torn or unreadable lines met when opening
        self.removed: set[str] = set()  # the tombstones replay() read (see the module's docstring)
        self.saved: SavedPartition | None = None  # the kept partition replay() found
        self.unusable: str | None = None  # why a kept partition file could not be used, if one could not
        self.filed: dict[str, int] = {}  # replay(): id -> its list, for lines of the kept partition's build
        self.generation: str | None = None  # the build the log's lines are filed under now
        self.lines, self.ends_cleanly = 0, True  # replay(): lines read; whether the last ends in a newline
        if model is not None:
            self.claim(model)

    def claim(self, model: str) -> None:
        record = self.path.parent / MODEL_NAME
        if record.exists():
            recorded = json.loads(record.read_text()).get("prediction_fingerprint")
            if recorded != model:
                raise ValueError(f"index store {self.path.parent} holds the predictions of another model "
                                 f"(fingerprint {recorded}; this model's is {model}): they are not comparable "
                                 "with this model's. Give this model its own --index-store directory")
        elif self.path.exists() and self.path.stat().st_size:
            raise ValueError(f"index store {self.path.parent} has items but no {MODEL_NAME} naming their "
                             "model: give this model its own --index-store directory")
        else:
            record.write_text(json.dumps({"prediction_fingerprint": model}) + "\n")

    def open(self, width: int, lists: int = 0, probe: int = 1, announce=None) -> VectorIndex:
        """The index as the log leaves it, partitioned by `lists` and `probe` (VectorIndex.partition;
        a kept partition of `lists` centroids is taken, not built again); then the log is compacted
        to its live items, with their lists, unless it holds nothing else already (_minimal)."""
        index = self.replay(width)
        index.partition(lists, probe, announce, saved=self.saved, filed=self.filed)
        self.keep(index, compact=not self._minimal(index))
        self.filed = {}
        return index

    def _minimal(self, index: VectorIndex) -> bool:
        """Whether the log just replayed is already what compacting it would write, give or take
        the order of its lines: one line per live item and per tombstone (no deleted, replaced
        or torn line), ending in a newline (the next append starts a line of its own), each item's
        line naming the list it is filed under now. Rewriting such a log at every start would
        only copy it (0.8 GB per 100k items of 1536-d; benchmarks/index_restart.py)."""
        if self.skipped or not self.ends_cleanly or self.lines != len(index) + len(self.removed):
            return False
        if index.generation is None:
            return True  # labels a lost partition left in the lines are ignored: no build names them
        return (len(self.filed) == len(index)
                and all(index.list_of(item_id) == target for item_id, target in self.filed.items()))

    def replay(self, width: int) -> VectorIndex:
        """The index as the log leaves it (exact; `filed` and `saved` say how it was partitioned).
        ValueError when the log holds embeddings of another width: another model's index, which
        this one could neither search nor extend."""
        index = VectorIndex(width)
        self.filed = {}
        self.saved, self.unusable = load_partition(self.path.parent, width)
        self.generation = self.saved.generation if self.saved else None
        self.lines, self.ends_cleanly = 0, True
        if self.path.exists():
            with self.path.open(encoding="utf-8") as log:
                for line in log:
                    self.lines += 1
                    self.ends_cleanly = line.endswith("\n")
                    try:
                        change = json.loads(line)
                        if change["op"] == "add":
                            embedding = decode_embedding(change["embedding"])
                            if embedding.shape[0] != width:
                                raise WrongWidth(f"{self.path} holds embeddings of width {embedding.shape[0]}, "
                                                 f"this model's are {width}: another model's index? "
                                                 "give this model its own index store")
                            index.add(change["id"], embedding, change["meta"])
                            self.removed.discard(change["id"])
                            if self.generation is not None and change.get("build") == self.generation:
                                self.filed[change["id"]] = int(change["list"])
                            else:
                                self.filed.pop(change["id"], None)  # replaced since: its list is unknown
                        else:
                            index.delete(change["id"])
                            self.filed.pop(change["id"], None)
                            if change.get("tombstone"):
                                self.removed.add(change["id"])
                    except WrongWidth:
                        raise
                    except (ValueError, KeyError, TypeError):
                        self.skipped += 1
        return index

    def keep(self, index: VectorIndex, compact: bool = False) -> None:
        """After a change that may have built the index's partition: keeps its centroids and
        rewrites the log with every item's list (nothing to do while the build is the one kept).
        compact: rewrite the log anyway."""
        if index.generation != self.generation:
            if index.generation is None:
                remove_partition(self.path.parent)
            else:
                save_partition(self.path.parent, SavedPartition(index.generation, index.centroids, index.built_at))
            self.generation = index.generation
            compact = True
        if compact:
            self.compact(index)

    def compact(self, index: VectorIndex) -> None:
        staging = self.path.with_suffix(".jsonl.tmp")
        with staging.open("w", encoding="utf-8") as out:
            for item_id, embedding, meta in index.items():
                out.write(self._add_line(item_id, embedding, meta, self._filing(index.generation, index.list_of(item_id))))
            for item_id in sorted(self.removed):
                out.write(self._delete_line(item_id, tombstone=True))
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, self.path)

    def add(self, item_id: str, embedding: np.ndarray, meta: dict, target: int | None = None) -> None:
        """target: the list of the index's current build it is filed under (None: the index is exact)."""
        # supersedes a tombstone on replay
        self._append(self._add_line(item_id, embedding, meta, self._filing(self.generation, target)))

    def add_many(self, items: list[tuple[str, np.ndarray, dict]], targets: np.ndarray | None = None) -> None:
        """One write and one sync for all of them (a cache's thousands of items at start-up).
        targets: their lists under the index's current build (None: the index is exact)."""
        if items:
            listed = [None] * len(items) if targets is None else np.asarray(targets).tolist()
            self._append("".join(self._add_line(*item, self._filing(self.generation, target))
                                 for item, target in zip(items, listed)))

    def delete(self, item_id: str, tombstone: bool = False) -> None:
        """tombstone: the id stays deleted through compaction (a cache's item, which would be added again)."""
        self._append(self._delete_line(item_id, tombstone))

    def delete_many(self, item_ids: list[str]) -> None:
        """One write and one sync (a cache's items dropped at start-up), no tombstones."""
        if item_ids:
            self._append("".join(self._delete_line(item_id, tombstone=False) for item_id in item_ids))

    @staticmethod
    def _delete_line(item_id: str, tombstone: bool) -> str:
        return json.dumps({"op": "delete", "id": item_id, **({"tombstone": True} if tombstone else {})}) + "\n"

    @staticmethod
    def _filing(generation: str | None, target: int | None) -> dict:
        return {} if generation is None or target is None else {"build": generation, "list": int(target)}

    @staticmethod
    def _add_line(item_id: str, embedding: np.ndarray, meta: dict, filing: dict | None = None) -> str:
        return json.dumps({"op": "add", "id": item_id, "meta": meta, **(filing or {}),
                           "embedding": encode_embedding(embedding)}) + "\n"

    def _append(self, line: str) -> None:
        # flushed and synced before the change is acknowledged: an answered add survives a crash
        with self.path.open("a", encoding="utf-8") as log:
            log.write(line)
            log.flush()
            os.fsync(log.fileno())
