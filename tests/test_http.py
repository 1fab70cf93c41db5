"""The ingest service as a pod runs it (`syllabus serve ingest`): a real uvicorn process on
a real nats-server and a real S3 server, reached over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from syllabus.services.runtime import free_port

from .conftest import EXAMPLES

TOKEN = "s3cr3t-test-token"


@pytest.fixture
def ingest_pod(nats_server, s3_server, tmp_path):
    port = free_port()
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
        "SYLLABUS_INGEST__MAX_FILE_BYTES": "100000",
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
        yield base, tmp_path / "pod.log", s3_server.secret_key
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_pod_health_metrics_auth_and_upload(ingest_pod):
    base, log_path, s3_secret = ingest_pod
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
