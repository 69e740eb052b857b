"""Loopback networking helpers."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_can_listen(host: str, port: int) -> None:
    """ValueError unless a server could listen on host:port now. Ray Serve's proxy binds with
    SO_REUSEPORT, so a second `vljepa serve` on a taken port does not fail: the kernel then splits
    the connections between the two servers, two different models answering at random. This bind
    (SO_REUSEADDR only: a port in TIME_WAIT is free) fails where such a listener exists."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            raise ValueError(f"cannot serve on {host}:{port}: "
                             + ("something already listens there (another `vljepa serve`?); stop it or "
                                "choose another --port" if taken else str(exc))) from None


@contextmanager
def local_s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a test dependency, `moto[server]`), as s3fs's own test suite
    runs it, for the tests and the benchmarks. Points the AWS_* variables (which s3fs and the Ray
    workers started afterwards read) at it. -> the endpoint URL."""
    port = free_loopback_port()
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    process = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
