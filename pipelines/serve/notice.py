"""Start-up notices of a Serve replica that the operator should see where they watch the server.

In the throughput-optimized mode `vljepa serve` runs (pipelines/cluster/ray_runtime.py), Serve writes a
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
    if logger.isEnabledFor(level) and not logs_to_stderr(logger):
        # written, not print()ed: Serve replaces print in the replica with one that logs its arguments
        sys.__stderr__.write(f"{logging.getLevelName(level)} {message % args}\n")
        sys.__stderr__.flush()


def logs_to_stderr(logger: logging.Logger) -> bool:
    """Whether Serve gave its logger a stream handler (its default mode), which already reaches the
    console. (Whether sys.stderr was replaced cannot tell: Ray wraps it in every worker.)"""
    return any(type(handler) is logging.StreamHandler for handler in logger.handlers)
