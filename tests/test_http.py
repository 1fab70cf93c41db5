"""The ingest service as a pod runs it (`syllabus serve ingest`): a real uvicorn process on
a real nats-server and a real S3 server, reached over HTTP. Bad input (fields, bodies over
the limits, chunked bodies that never say their length) gets a 4xx in the error shape,
and the pod never spools more of an upload than its limits allow."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from syllabus.services.runtime import free_port

from .conftest import EXAMPLES

TOKEN = "s3cr3t-test-token"
#: the pod's ingest.max_file_bytes
MAX_FILE = 100_000
#: POST /v1/documents reads at most max_file_bytes * 100 files + 1 MiB
BODY_CAP = MAX_FILE * 100 + (1 << 20)


@dataclass
class IngestPod:
    base: str
    log_path: Path
    s3_secret: str
    #: the uvicorn process (its open files are where an upload is spooled)
    pid: int
    #: the pod's TMPDIR: where Starlette spools uploads over 1 MiB
    tmpdir: Path
    token: str = TOKEN

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def ingest_pod(nats_server, s3_server, tmp_path):
    port = free_port()
    tmpdir = tmp_path / "pod-tmp"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    env.update({
        "SYLLABUS_NATS__URL": nats_server.url,
        "SYLLABUS_STORE__KIND": "s3",
        "SYLLABUS_STORE__ENDPOINT": s3_server.endpoint,
        "SYLLABUS_STORE__ACCESS_KEY": s3_server.access_key,
        "SYLLABUS_STORE__SECRET_KEY": s3_server.secret_key,
        "SYLLABUS_STORE__SECURE": "false",
        "SYLLABUS_STORE__BUCKET": "pod-bucket",
        "SYLLABUS_HTTP__TOKEN": TOKEN,
        "SYLLABUS_INGEST__MAX_FILE_BYTES": str(MAX_FILE),
        "TMPDIR": str(tmpdir),
    })
    log = (tmp_path / "pod.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "syllabus"), "serve", "ingest",
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "pod.log").read_text())
            time.sleep(0.2)
        yield IngestPod(base=base, log_path=tmp_path / "pod.log",
                        s3_secret=s3_server.secret_key, pid=proc.pid, tmpdir=tmpdir)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_pod_health_metrics_auth_and_upload(ingest_pod):
    base, log_path, s3_secret = ingest_pod.base, ingest_pod.log_path, ingest_pod.s3_secret
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{base}/health/live").json()["status"] == "ok"
    ready = httpx.get(f"{base}/health/ready").json()
    assert ready["checks"] == {"broker": True, "store": True}

    # everything but the probes needs the token
    assert httpx.get(f"{base}/metrics").status_code == 401
    files = {"file": ("swarming.md", (EXAMPLES / "swarming.md").read_bytes(), "text/markdown")}
    r = httpx.post(f"{base}/v1/documents", files=files, data={"collection": "pod"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = httpx.post(f"{base}/v1/documents", files=files, data={"collection": "pod"},
                   headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401

    r = httpx.post(f"{base}/v1/documents", files=files, data={"collection": "pod"}, headers=auth)
    assert r.status_code == 202, r.text
    [doc] = r.json()["documents"]
    assert doc["outcome"] == "submitted" and len(doc["doc_id"]) == 64

    # a name that tries to leave its folder is refused, and so is a bad collection
    evil = {"file": ("../../etc/passwd", b"root:x:0:0", "text/plain")}
    r = httpx.post(f"{base}/v1/documents", files=evil, data={"collection": "pod"}, headers=auth)
    assert r.status_code == 400
    assert r.json()["documents"][0]["reason"] == "unsafe_name"
    r = httpx.post(f"{base}/v1/documents", files=files, data={"collection": "Bad Name!"},
                   headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_collection"
    big = {"file": ("big.txt", b"x" * 150_000, "text/plain")}
    r = httpx.post(f"{base}/v1/documents", files=big, headers=auth)
    assert r.status_code == 400 and r.json()["documents"][0]["reason"] == "too_large"

    # the pod ingests what was uploaded; its metrics say so
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{base}/metrics", headers=auth).text
        if 'syllabus_documents_total{outcome="ingested",reason=""} 1.0' in metrics:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(metrics)
    assert "faststream_received_messages_total" in metrics
    assert "syllabus_handler_seconds_bucket" in metrics
    # the token and the S3 secret never reach the log
    log_text = log_path.read_text()
    assert TOKEN not in log_text and s3_secret not in log_text


# --- bad input ----------------------------------------------------------------------------


def _md(name: str = "swarming.md") -> dict:
    return {"file": (name, (EXAMPLES / "swarming.md").read_bytes(), "text/markdown")}


def test_bad_fields_get_a_4xx_in_the_error_shape(ingest_pod):
    """A collection with a trailing newline (which ``re.match`` with ``$`` let through, and
    the event's model then refused: a plain-text 500), a bad run_id, a field sent as a
    file, an unknown path and a wrong method: each a 4xx JSON error naming the problem."""
    base, auth = ingest_pod.base, ingest_pod.auth
    r = httpx.post(f"{base}/v1/documents", files=_md(), data={"collection": "abc\n"},
                   headers=auth)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_collection"
    assert r.json()["error"]["param"] == "collection"
    assert "'abc\\n'" in r.json()["error"]["message"]

    # an empty field is a value (refused), not "use the default"
    r = httpx.post(f"{base}/v1/documents", files=_md(), data={"collection": ""}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_collection"

    for bad in ("bad id", "x\n", "../../etc", "-starts-with-dash", "a" * 129, "caf\u00e9", ""):
        r = httpx.post(f"{base}/v1/documents", files=_md(), headers=auth,
                       data={"collection": "pod", "run_id": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_run_id", bad
        assert r.json()["error"]["param"] == "run_id"
    # what `syllabus run` makes is fine
    r = httpx.post(f"{base}/v1/documents", files=_md(), headers=auth,
                   data={"collection": "pod", "run_id": "20261127T194242-2ea0ceab"})
    assert r.status_code == 202, r.text

    # a collection sent as a file part, not a text field
    files = [("file", ("a.md", b"# A\n\nsome text", "text/markdown")),
             ("collection", ("c.txt", b"pod", "text/plain"))]
    r = httpx.post(f"{base}/v1/documents", files=files, headers=auth)
    assert r.status_code == 400 and "text field" in r.json()["error"]["message"]

    # a file name that is not valid Unicode (a lone surrogate, by way of charset=utf-7)
    body = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="+2AA-.md"\r\n'
            b"Content-Type: text/markdown\r\n\r\n# A\n\nsome text\r\n--x--\r\n")
    r = httpx.post(f"{base}/v1/documents", content=body, headers={
        **auth, "Content-Type": "multipart/form-data; charset=utf-7; boundary=x"})
    assert r.status_code == 400, r.text
    [doc] = r.json()["documents"]
    assert doc["reason"] == "unsafe_name" and doc["filename"] == "'\\ud800.md'"

    # not multipart; broken multipart; no boundary
    r = httpx.post(f"{base}/v1/documents", content=b"{}", headers={
        **auth, "Content-Type": "application/json"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(f"{base}/v1/documents", content=b"--x\r\nnonsense", headers={
        **auth, "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{base}/v1/documents", content=b"", headers={
        **auth, "Content-Type": "multipart/form-data"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"

    # Starlette's own 404 and 405, as JSON error bodies
    r = httpx.get(f"{base}/v1/documents", headers=auth)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"
    r = httpx.get(f"{base}/v1/nothing-here", headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


class _SpoolWatch:
    """The most bytes the pod held at once in files under its TMPDIR (Starlette spools an
    upload over 1 MiB to an unlinked temporary file; ``/proc/<pid>/fd`` still sees it)."""

    def __init__(self, pod: IngestPod) -> None:
        self.pod, self.peak, self._stop = pod, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        fds = Path(f"/proc/{self.pod.pid}/fd")
        prefix = str(self.pod.tmpdir)
        while not self._stop.is_set():
            total = 0
            for fd in list(fds.iterdir()) if fds.exists() else []:
                try:
                    if os.readlink(fd).startswith(prefix):
                        total += os.stat(fd).st_size
                except OSError:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.005)

    def __enter__(self) -> _SpoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class _Sent:
    status: int
    body: dict
    #: the body bytes the client got into its socket before the server answered
    sent: int


def _post_chunked(pod: IngestPod, parts: Iterator[bytes], boundary: str) -> _Sent:
    """POST /v1/documents with ``Transfer-Encoding: chunked`` (no Content-Length) on a raw
    socket, sending ``parts`` until the server answers or closes; count what was sent."""
    url = urlsplit(pod.base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.sendall((f"POST /v1/documents HTTP/1.1\r\nHost: {url.netloc}\r\n"
                  f"Authorization: Bearer {pod.token}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode())
    sent, answered = 0, False
    try:
        for part in parts:
            if select.select([sock], [], [], 0)[0]:  # the answer is there: stop sending
                answered = True
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            sent += len(part)
        if not answered:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, f"no answer after {sent} bytes"
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return _Sent(status=status, body=json.loads(body), sent=sent)


def _multipart(boundary: str, filename: str, size: int, *, block: int = 64 * 1024,
               seed: bytes = b"") -> Iterator[bytes]:
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"collection\"\r\n\r\n"
           f"pod\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n").encode()
    for i in range(0, size, block):
        yield _filler(seed, i, min(block, size - i))
    yield f"\r\n--{boundary}--\r\n".encode()


def _filler(seed: bytes, offset: int, n: int) -> bytes:
    line = (seed or b"lorem ipsum dolor sit amet ") * 4
    rep = (line * (n // len(line) + 2))
    start = offset % len(line)
    return rep[start:start + n]


def test_chunked_upload_stops_at_the_body_cap(ingest_pod):
    """A chunked body (no Content-Length) far over the cap: the pod stops reading at the
    cap and answers 413 ``too_large``; the client could not push the whole body, and the
    pod never spooled the file to disk (it keeps at most max_file_bytes of it)."""
    total = 80 * 1024 * 1024
    with _SpoolWatch(ingest_pod) as watch:
        got = _post_chunked(ingest_pod, _multipart("b0undary", "huge.txt", total), "b0undary")
    assert got.status == 413, got
    assert got.body["error"]["code"] == "too_large"
    assert got.body["error"]["type"] == "invalid_request_error"
    # it stopped reading at the cap: what got out is the cap plus socket buffers (about
    # 0.3 MB here), far from the 80 MB
    assert BODY_CAP <= got.sent < BODY_CAP + (16 << 20), got.sent
    assert watch.peak < 1 << 20, f"spooled {watch.peak} bytes"
    # and it is still serving
    r = httpx.post(f"{ingest_pod.base}/v1/documents", files=_md(), headers=ingest_pod.auth)
    assert r.status_code == 202, r.text


def test_a_file_over_the_limit_is_refused_without_spooling_it(ingest_pod):
    """A 5 MB file (under the body cap, over max_file_bytes), chunked: refused as
    ``too_large`` with its real size and id (sha256 of all its bytes), while no more than
    max_file_bytes of it was ever kept (Starlette alone would spool all 5 MB to disk)."""
    size = 5_000_000
    content = b"".join(_filler(b"five megabytes ", i, min(65536, size - i))
                       for i in range(0, size, 65536))
    with _SpoolWatch(ingest_pod) as watch:
        got = _post_chunked(ingest_pod, _multipart("bnd", "five.txt", size,
                                                   seed=b"five megabytes "), "bnd")
    assert got.status == 400, got
    [doc] = got.body["documents"]
    assert doc["outcome"] == "rejected" and doc["reason"] == "too_large"
    assert doc["size_bytes"] == size and f"{size} bytes" in doc["detail"]
    assert doc["doc_id"] == hashlib.sha256(content).hexdigest()
    assert watch.peak < 1 << 20, f"spooled {watch.peak} bytes"


def test_cli_refuses_a_collection_with_a_trailing_newline(nats_server, tmp_path):
    """``syllabus ingest --collection $'abc\\n' FILE``: a usage error naming the value, not
    a traceback (``$`` matched before the newline, and the event's model refused it)."""
    from syllabus.services.cli import main

    doc = tmp_path / "a.md"
    doc.write_text("# A\n\nSome text about bees.\n")
    env = {"SYLLABUS_NATS__URL": nats_server.url, "SYLLABUS_STORE__KIND": "local",
           "SYLLABUS_STORE__PATH": str(tmp_path / "store")}
    for args in (["ingest", "--collection", "abc\n", str(doc)],
                 ["dataset", "build", "--collection", "abc\n"]):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert "Invalid value for '--collection'" in result.output
        assert "'abc\\n'" in result.output
        assert "Traceback" not in result.output
    # and a bad 'collection' setting is named, not a traceback
    result = CliRunner().invoke(main, ["ingest", str(doc)],
                                env={**env, "SYLLABUS_COLLECTION": "Bad Name"})
    assert result.exit_code == 1 and "invalid settings: collection" in result.output, \
        (result.output, result.exception)


def test_collection_and_run_id_checks_match_the_whole_string():
    from syllabus.contracts import (
        COLLECTION_PATTERN,
        check_collection,
        check_run_id,
        is_valid_collection,
        is_valid_run_id,
    )

    assert is_valid_collection("bees") and is_valid_collection("a" * 64)
    for bad in ("abc\n", "abc\n\n", "", "a" * 65, "Abc", "-abc", "a b", None, 3):
        assert not is_valid_collection(bad), bad
    assert is_valid_run_id("20261127T194242-2ea0ceab") and is_valid_run_id("job:1.2_3")
    for bad in ("x\n", "", "a b", "-x", "a" * 129, "é"):
        assert not is_valid_run_id(bad), bad
    with pytest.raises(ValueError, match=r"'abc\\n'"):
        check_collection("abc\n")
    with pytest.raises(ValueError, match="run id"):
        check_run_id("x\n")
    assert check_collection("bees") == "bees"
    # the pattern (what pydantic and the OpenAPI schema use) agrees
    from pydantic import BaseModel, Field, ValidationError

    class M(BaseModel):
        c: str = Field(pattern=COLLECTION_PATTERN)

    with pytest.raises(ValidationError):
        M(c="abc\n")
