"""Webdataset tar shards: resolve sources, read samples robustly, write shards.

Layout (img2dataset / video2dataset): `{shard:05d}.tar`, each sample a run of members
`<key>.<ext>` sharing a key, e.g. `000017.mp4`, `000017.txt`, `000017.json`. Keys contain no dots
(Ray's read_webdataset and most tools split the member name at the first dot).

Reading never gives up on a whole shard for one bad member: a truncated tar yields every complete
sample before the damage, then one `truncated_shard` record.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator

import fsspec
from braceexpand import braceexpand

from ops.data.samples import EMPTY_SHARD, TRUNCATED_SHARD, UNREADABLE_SHARD, RawSample


def resolve_shards(source: str) -> list[str]:
    """A directory, a glob, a brace pattern (`shards/{00000..00009}.tar`) or an s3:// form of any
    of them -> the sorted list of tar URLs."""
    urls: list[str] = []
    for pattern in braceexpand(source):
        fs, path = fsspec.core.url_to_fs(pattern)
        protocol = _protocol_prefix(pattern)
        if fs.isdir(path):
            found = [p for p in fs.find(path) if p.endswith(".tar")]
        elif any(ch in path for ch in "*?["):
            found = fs.glob(path)
        else:
            found = [path] if fs.exists(path) else []
        urls.extend(protocol + p for p in found)
    if not urls:
        raise ValueError(f"no .tar shards found at {source!r}")
    return sorted(set(urls))


def _protocol_prefix(url: str) -> str:
    match = re.match(r"^([a-z0-9]+)://", url)
    return "" if match is None or match.group(1) == "file" else f"{match.group(1)}://"


def shard_name(url: str) -> str:
    """The shard's output name: its file name without `.tar`."""
    return url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".tar")


def split_member_name(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext.lower()


def iter_samples(url: str) -> Iterator[RawSample]:
    """Samples of one shard in order; shard-level damage becomes a final error record."""
    current: RawSample | None = None
    members_read = 0
    try:
        with fsspec.open(url, "rb") as raw:
            with tarfile.open(fileobj=raw, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, ext = split_member_name(member.name)
                    data = tar.extractfile(member).read()
                    if len(data) != member.size:
                        raise tarfile.ReadError(f"member {member.name} is cut short")
                    members_read += 1
                    if current is not None and key != current.key:
                        yield current
                        current = None
                    current = current or RawSample(key=key)
                    current.members[ext] = data
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        # The sample being assembled may be incomplete: drop it, and say so once.
        reason = TRUNCATED_SHARD if members_read else UNREADABLE_SHARD
        key = f"{current.key}" if current is not None else "<shard>"
        yield RawSample(key=key, error=(reason, f"{type(exc).__name__}: {exc} (after {members_read} members)"))
        return
    if current is not None:
        yield current
    elif members_read == 0:
        yield RawSample(key="<shard>", error=(EMPTY_SHARD, "the tar holds no files"))


class ShardWriter:
    """Writes samples into one tar shard; members of a sample stay together, in order."""

    def __init__(self, url: str):
        self._file = fsspec.open(url, "wb").open()
        self._tar = tarfile.open(fileobj=self._file, mode="w")

    def write(self, key: str, members: dict[str, bytes]) -> None:
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
        for ext, data in members.items():
            info = tarfile.TarInfo(name=f"{key}.{ext}")
            info.size = len(data)
            info.mtime = 0  # byte-identical shards for the same content
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()
        self._file.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
