"""Turn a user's own media into webdataset shards: a folder, a CSV or a JSONL manifest.

    folder   every image / video file; caption from a sidecar `<name>.txt`, metadata (query,
             answer, candidates, source) from an optional sidecar `<name>.json`
    CSV      columns: path, caption (or text); optional query, answer, candidates (JSON list or
             '|'-separated), source
    JSONL    one object a line with the same fields

Relative paths resolve against the manifest's directory. Output is img2dataset's layout:
`{shard:05d}.tar` with keys `{shard:05d}{index:04d}`, and beside each tar a `{shard:05d}.parquet`
report with `key, path, status, error_message` for every input, failed ones included.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ops.data.samples import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from ops.data.shards import ShardWriter

MEDIA_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
REPORT_SCHEMA = pa.schema([("key", pa.string()), ("path", pa.string()), ("status", pa.string()),
                           ("error_message", pa.string())])


@dataclass
class Entry:
    path: str
    caption: str = ""
    query: str = ""
    answer: str = ""
    candidates: list[str] = field(default_factory=list)
    source: str = ""
    # why the input could not be read (a sidecar or manifest line that is not valid JSON, a
    # candidates field that is not a list): reported as this entry's failure while the rest go on
    error: str = ""


def _candidates(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value or "").strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"candidates {text[:80]!r} are not a JSON list ({exc})") from None
        if not isinstance(values, list):
            raise ValueError(f"candidates {text[:80]!r} are not a JSON list")
        return [str(v) for v in values]
    return [part.strip() for part in text.split("|") if part.strip()]


def _entry(record, base: Path, where: str) -> Entry:
    """`record` (one manifest row or line, or a file's sidecars) -> its Entry; a record that cannot
    be read gives an Entry that carries why (`where`: the line or file to name)."""
    if not isinstance(record, dict):
        return Entry(path=where, error=f"{where}: not a JSON object ({type(record).__name__})")
    try:
        return _fields(record, base)
    except ValueError as exc:  # candidates that are not a JSON list
        return Entry(path=str(record.get("path") or record.get("media") or where), error=f"{where}: {exc}")


def _fields(record: dict, base: Path) -> Entry:
    path = str(record.get("path") or record.get("media") or "")
    if path and not Path(path).is_absolute():
        path = str(base / path)
    return Entry(path=path, caption=str(record.get("caption") or record.get("text") or ""),
                 query=str(record.get("query") or ""), answer=str(record.get("answer") or ""),
                 candidates=_candidates(record.get("candidates")), source=str(record.get("source") or ""))


def read_entries(source: str) -> Iterator[Entry]:
    location = Path(source)
    if location.is_dir():
        for media in sorted(p for p in location.rglob("*") if p.suffix.lower().lstrip(".") in MEDIA_EXTENSIONS):
            record: dict = {}
            sidecar_json = media.with_suffix(".json")
            if sidecar_json.exists():
                try:
                    record = json.loads(sidecar_json.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    yield Entry(path=str(media), error=f"{sidecar_json}: not JSON ({exc})")
                    continue
                if not isinstance(record, dict):
                    yield Entry(path=str(media), error=f"{sidecar_json}: not a JSON object ({type(record).__name__})")
                    continue
            sidecar_txt = media.with_suffix(".txt")
            if sidecar_txt.exists():
                record["caption"] = sidecar_txt.read_text(errors="replace").strip()
            # relative to the folder, which _entry joins back on (rglob's paths already start with a
            # relative folder's name); set last, so a sidecar's own "path" field cannot redirect it
            record["path"] = str(media.relative_to(location))
            yield _entry(record, location, str(sidecar_json))
    elif location.suffix.lower() == ".csv":
        with location.open(newline="") as handle:
            for number, record in enumerate(csv.DictReader(handle), 2):  # line 1: the header
                yield _entry(record, location.parent, f"{source}:{number}")
    elif location.suffix.lower() in (".jsonl", ".ndjson"):
        with location.open() as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield Entry(path=f"{source}:{number}", error=f"{source}:{number}: not JSON ({exc})")
                        continue
                    yield _entry(record, location.parent, f"{source}:{number}")
    elif not location.exists():
        raise ValueError(f"{source!r} does not exist")
    else:
        raise ValueError(f"{source!r} is neither a folder, a .csv nor a .jsonl manifest")


def _members(entry: Entry) -> dict[str, bytes]:
    if entry.error:
        raise ValueError(entry.error)
    extension = Path(entry.path).suffix.lower().lstrip(".")
    if extension not in MEDIA_EXTENSIONS:
        raise ValueError(f"unsupported media type {extension!r}")
    members = {extension: Path(entry.path).read_bytes()}
    if entry.caption:
        members["txt"] = entry.caption.encode()
    meta = {k: v for k, v in {"query": entry.query, "answer": entry.answer, "candidates": entry.candidates,
                               "source": entry.source}.items() if v}
    if not entry.caption and not entry.answer:
        raise ValueError("no caption and no answer")
    if meta:
        members["json"] = json.dumps(meta).encode()
    return members


def write_shards(entries: Iterator[Entry], out_dir: str, samples_per_shard: int, progress=None) -> dict:
    """Write entries into shards; returns {"shards": n, "written": n, "failed": n}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"shards": 0, "written": 0, "failed": 0}
    shard, index, writer, report = 0, 0, None, []

    def close_shard():
        nonlocal writer, report
        if writer is not None:
            writer.close()
            pq.write_table(pa.Table.from_pylist(report, schema=REPORT_SCHEMA), out / f"{shard:05d}.parquet")
            counts["shards"] += 1
        writer, report = None, []

    for entry in entries:
        if writer is None:
            writer = ShardWriter(str(out / f"{shard:05d}.tar"))
        key = f"{shard:05d}{index:04d}"
        try:
            writer.write(key, _members(entry))
            report.append({"key": key, "path": entry.path, "status": "ok", "error_message": ""})
            counts["written"] += 1
        except (OSError, ValueError) as exc:
            report.append({"key": key, "path": entry.path, "status": "error", "error_message": str(exc)})
            counts["failed"] += 1
        index += 1
        if progress is not None:
            progress()
        if index == samples_per_shard:
            close_shard()
            shard, index = shard + 1, 0
    close_shard()
    return counts
