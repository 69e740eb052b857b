"""Raw webdataset members -> a typed sample: media bytes plus the texts VL-JEPA trains on.

Text fields by source kind (docs/data.md):
- image-caption (Datacomp, YFCC) and video-caption (Action100M): `txt` is the caption, the
  training target; there is no query (query-free pretraining).
- query-conditioned SFT (PLM: VQA, captioning, classification): `json` holds `query`, `answer`
  (the target) and, where present, `candidates`; `txt`, when there, is the answer too.
An optional `json` also carries `source` (a dataset name) and `task`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "avi")


@dataclass
class RawSample:
    """A sample's members as a shard holds them, before parsing."""

    key: str
    members: dict[str, bytes] = field(default_factory=dict)  # extension -> bytes
    error: tuple[str, str] | None = None  # (reason, message) for a shard-level problem


@dataclass
class Sample:
    key: str
    media_kind: str  # "image" | "video"
    media: bytes
    target: str
    query: str = ""
    candidates: list[str] = field(default_factory=list)
    task: str = "caption"  # caption | vqa | classification
    source: str = ""


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise SampleError(BAD_TEXT_ENCODING, f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def parse_sample(raw: RawSample) -> Sample:
    members = raw.members
    media_ext = next((e for e in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS if e in members), None)
    if media_ext is None:
        raise SampleError(MISSING_MEDIA, f"no image or video member (has: {', '.join(sorted(members)) or 'nothing'})")
    meta: dict = {}
    if "json" in members:
        try:
            meta = json.loads(_text(members["json"], "json"))
        except json.JSONDecodeError as exc:
            raise SampleError(BAD_JSON, f"json member does not parse: {exc}") from None
        if not isinstance(meta, dict):
            raise SampleError(BAD_JSON, "json member is not an object")
    caption = _text(members["txt"], "txt") if "txt" in members else ""
    target = str(meta.get("answer") or caption).strip()
    if not target:
        raise SampleError(MISSING_TEXT, "no caption (txt) and no answer (json)")
    candidates = [str(c) for c in meta.get("candidates") or []]
    query = str(meta.get("query") or "").strip()
    task = str(meta.get("task") or ("vqa" if candidates and query else "caption"))
    return Sample(
        key=raw.key,
        media_kind="image" if media_ext in IMAGE_EXTENSIONS else "video",
        media=members[media_ext],
        target=target,
        query=query,
        candidates=candidates,
        task=task,
        source=str(meta.get("source") or ""),
    )


# Why a sample was rejected. Each reason is a stable code that reports and summaries count.
class SampleError(Exception):
    """A sample that cannot be used; the job records it and goes on."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


MISSING_MEDIA = "missing_media"
MISSING_TEXT = "missing_text"
BAD_TEXT_ENCODING = "bad_text_encoding"
BAD_JSON = "bad_json"
CORRUPT_IMAGE = "corrupt_image"
IMAGE_TOO_LARGE = "image_too_large"
EMPTY_VIDEO = "empty_video"
CORRUPT_VIDEO = "corrupt_video"
VIDEO_TOO_SHORT = "video_too_short"
VIDEO_TOO_LARGE = "video_too_large"
TOO_MANY_WINDOWS = "too_many_windows"  # a stream longer than a server accepts
WINDOW_TOO_SHORT = "window_too_short"  # a stream's window spans fewer frames than the model samples
TRUNCATED_SHARD = "truncated_shard"
UNREADABLE_SHARD = "unreadable_shard"
# A well-formed tar without samples: reported as one record so the shard still gets committed
# (done, with nothing cached) instead of being computed again by every re-run.
EMPTY_SHARD = "empty_shard"
