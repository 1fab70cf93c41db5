"""Child servers (nats-server, tritonserver, llama.cpp) that never outlive their parent,
and data directories that only one of them uses at a time."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from syllabus.contracts import parent_death_signal

__all__ = ["DirectoryInUse", "DirectoryLock", "parent_death_signal"]


class DirectoryInUse(RuntimeError):
    """Another process holds the data directory."""


class DirectoryLock:
    """An exclusive ``flock`` on ``<dir>/.lock``.

    Pass :attr:`fd` to the child server (``pass_fds``): the lock then lasts until the
    parent *and* the child have closed it, so a rerun cannot start a second server on
    the directory while the first one is still shutting down."""

    def __init__(self, directory: Path, *, what: str) -> None:
        self.path = Path(directory) / ".lock"
        self.what = what
        self.fd: int | None = None

    def acquire(self, timeout: float = 15.0) -> DirectoryLock:
        """Take the lock, waiting up to ``timeout`` seconds for a holder that is stopping
        (a server whose parent just died shuts down cleanly first); ``DirectoryInUse``
        after that."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._in_use(fd) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def _in_use(self, fd: int) -> DirectoryInUse:
        holder = ""
        with contextlib.suppress(OSError, ValueError):
            holder = os.pread(fd, 64, 0).decode().strip()
        os.close(fd)
        return DirectoryInUse(f"{self.path.parent} is in use by another {self.what}"
                              + (f" (pid {holder})" if holder else "")
                              + "; stop it first, or use another --out folder")

    def note_holder(self, pid: int) -> None:
        """Record the child's pid (the process that keeps the lock longest)."""
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, str(pid).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
