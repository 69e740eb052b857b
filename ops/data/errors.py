"""Why a sample was rejected. Each reason is a stable code that reports and summaries count."""

from __future__ import annotations


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
