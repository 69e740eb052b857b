"""Start-up notices of a Serve replica that the operator should see where they watch the server.

In the throughput-optimized mode `vljepa serve` runs (pipelines/ray_runtime.py), Serve writes a
replica's log records to its file through a 1000-record buffer, flushed only when full or on an
error, and redirects the replica's stdout and stderr into that buffer. So "index cache: 912 videos
added" or "index: 864 items dropped" reached no console and, for a quiet replica, not even its log
file. A notice is logged as usual, the buffer flushed, and, where Serve took stderr over, the line
also written to the process's real stderr, which Ray forwards to the driver's console as
`(ServeReplica:APP:DEPLOYMENT pid=...) ...`. In Ray's default mode the logger writes to stderr
itself, so the line is not written twice.
"""

from __future__ import annotations

import logging
import sys

SERVE_LOGGER = "ray.serve"


def notice(level: int, message: str, *args) -> None:
    logger = logging.getLogger(SERVE_LOGGER)
    logger.log(level, message, *args)
    for handler in logger.handlers:
        handler.flush()
    if sys.stderr is not sys.__stderr__ and logger.isEnabledFor(level):  # Serve redirected stderr to the log
        print(f"{logging.getLevelName(level)} {message % args}", file=sys.__stderr__, flush=True)
