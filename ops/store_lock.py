"""One writer per index store directory: an exclusive flock on `DIR/lock`, held while a process
writes there, so that two replicas of one shard never write one store.

Why: Ray Serve starts a shard's new replica while the old one is still stopping (a redeploy, a
rolling update, a replica replaced after failed health checks on a node that is slow, not dead),
and both would open the same store. Each keeps its own index in memory and appends to the one
log; a compaction by either writes a snapshot of *its* index and keeps only the lines after *its*
capture, so the other's changes before it are lost, and either may remove a snapshot the other's
log still names. With the lock, the new replica waits until the old one has given the store up
(RetrievalIndex.close at its graceful shutdown; the kernel releases the lock if the process dies)
and then reads everything the old one wrote. `vljepa index-reshard` takes the same locks and is
refused while a server holds them.

The claim is per process: a second IndexLog of the same directory in one process (a test reading
back a shard it holds, a benchmark restarting one) shares it, since the kernel cannot tell them
apart anyway; the file is unlocked when the last of them closes. flock works on local disks and
on the NFS/EFS volumes a cluster shares stores on (Linux emulates it with NFS byte-range locks).
The file holds the holder's host and pid, so a refusal can say who holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOCK_NAME = "lock"
POLL_S = 0.5


class StoreInUse(RuntimeError):
    """Another process holds the store's lock."""


_registry_lock = threading.Lock()
_held: dict[str, list] = {}  # real path of the lock file -> [fd, holders in this process]


class StoreLock:
    def __init__(self, directory: str | Path, wait_s: float = 0.0,
                 waiting: Callable[[str], None] | None = None, waiting_every_s: float = 30.0):
        """Claims `directory` (created if missing) for this process, waiting up to wait_s for
        another process to give it up (StoreInUse after that, naming the holder). waiting(holder)
        is told every waiting_every_s seconds while it waits."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = str((directory / LOCK_NAME).resolve())
        self.released = False
        deadline, told = time.monotonic() + wait_s, time.monotonic()
        while not self._claim():
            if time.monotonic() >= deadline:
                raise StoreInUse(f"index store {directory} is in use by {holder(self.path)} (its {LOCK_NAME} file is "
                                 "locked): one process at a time writes a store. Stop the server using it (or wait "
                                 "for its replica to stop), then try again")
            if waiting is not None and time.monotonic() - told >= waiting_every_s:
                waiting(holder(self.path))
                told = time.monotonic()
            time.sleep(POLL_S)

    def _claim(self) -> bool:
        with _registry_lock:
            if self.path in _held:
                _held[self.path][1] += 1
                return True
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
            _held[self.path] = [fd, 1]
            return True

    def release(self) -> None:
        """Gives the claim up (once); the file is unlocked when this process's last claim goes."""
        with _registry_lock:
            if self.released:
                return
            self.released = True
            entry = _held.get(self.path)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self.path]
                os.close(entry[0])  # closing the descriptor drops the flock

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(path: str) -> str:
    """Who the lock file says holds it ("host pid N"), as well as it can be read."""
    try:
        return Path(path).read_text().strip() or "another process"
    except OSError:
        return "another process"
