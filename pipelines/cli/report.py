"""Console output shared by the verbs: readable tables, and the `--json` last line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

# While a process entry point runs (`vljepa <verb>`, `python -m pipelines.<verb>`), the --json
# result is held here and printed after Ray is disconnected; see json_line_after_ray.
_held: list[dict] | None = None


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*map(str, r)) for r in [header, *rows])


def print_json_result(result: dict) -> None:
    """The contract of `--json`: one JSON object alone on the last line of stdout."""
    if _held is not None:
        _held[:] = [result]  # printed by json_line_after_ray, once nothing else can print
        return
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)


def _disconnect_ray() -> None:
    ray = sys.modules.get("ray")  # a verb that never imported Ray has nothing to disconnect
    if ray is not None and ray.is_initialized():
        ray.shutdown()  # stops and joins the thread that forwards worker / raylet logs


@contextlib.contextmanager
def json_line_after_ray() -> Iterator[None]:
    """Hold the verb's --json line until Ray is disconnected, then print it. Ray forwards worker
    and raylet logs to the driver's stdout from a background thread, so a line (say, a raylet
    warning about a lost node) could otherwise land after the JSON and break the last-line
    contract; a multi-node run did exactly that. Only for process entry points: disconnecting
    ends the process's Ray session."""
    global _held
    _held = []
    try:
        yield
        held = _held
    finally:
        _held = None
    if held:
        _disconnect_ray()
        print_json_result(held[-1])


@contextlib.contextmanager
def json_printed_now() -> Iterator[None]:
    """For a verb run in-process by another (the demo reads each verb's --json line as it comes):
    print its result at once, even inside json_line_after_ray."""
    global _held
    saved, _held = _held, None
    try:
        yield
    finally:
        _held = saved


# What a verb raises for a mistake of its user (the project's convention: ValueError for user
# errors, assert for invariants): a path with no shards, a cache or a model that is not one, a bad
# value; and storage its user has to set up: a path or bucket it may not read or write (or one
# under a file), S3 without credentials. A process entry point reports these in one line instead
# of a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)
# botocore's, matched by name: importing botocore for every verb would cost its start-up time
CREDENTIAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError")
S3_CREDENTIALS_HINT = ("S3 needs credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; "
                       "and AWS_ENDPOINT_URL for an endpoint other than AWS")
TRACEBACK_ENV = "VLJEPA_TRACEBACK"


def worker_failures(exc: BaseException) -> list[BaseException]:
    """The errors of the workers of a failed Ray Train run (its WorkerGroupError, matched by name:
    importing Ray Train to check would cost every verb its start-up time), else []."""
    failures = getattr(exc, "worker_failures", None)
    if type(exc).__name__ == "WorkerGroupError" and isinstance(failures, dict):
        return [failures[rank] for rank in sorted(failures)]
    return []


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error; None for anything else (a bug: its traceback). A
    training run whose workers all failed on a user error (data that cannot fill a batch, a cache
    file gone) is one too: the workers' message, not Ray Train's traceback around it."""
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    if any(c.__module__.startswith("botocore") and c.__name__ in CREDENTIAL_ERRORS for c in type(exc).__mro__):
        return f"{exc} ({S3_CREDENTIALS_HINT})"
    failures = worker_failures(exc)
    messages = [user_error_message(failure) for failure in failures]
    if failures and None not in messages:
        return "; ".join(dict.fromkeys(messages)) + f" (in {len(failures)} training worker(s))"
    return None


def run_as_process(main: Callable[[], int | None], verb: str) -> int:
    """`vljepa <verb>`, `python -m pipelines.<verb>`: the verb's main with the --json contract kept
    (see above), and a user error reported as `vljepa VERB: error: MESSAGE` on stderr with exit
    status 2, like argparse's. The line names where it was raised, so a bug that happens to raise a
    ValueError still points at its source; VLJEPA_TRACEBACK=1 shows the whole traceback instead.
    In-process callers (tests, notebooks, the demo) call main() directly and get the exception."""
    try:
        with json_line_after_ray():
            return main() or 0
    except Exception as exc:
        message = user_error_message(exc)
        if message is None or os.environ.get(TRACEBACK_ENV) == "1":
            raise
        site = raise_site(exc)
        if worker_failures(exc):  # their tracebacks stayed in the workers (Ray Train logs them above)
            site += ", from a training worker"
        print(f"vljepa {verb}: error: {message}\n  (raised at {site}; "
              f"{TRACEBACK_ENV}=1 shows the traceback)", file=sys.stderr)
        return 2


def raise_site(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
