"""Both artifact stores, through the same tests: a directory, and a real S3 server
(``rclone serve s3``, see ``tests/s3server.py``) driven by the MinIO SDK."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import tracemalloc
import urllib.request
from pathlib import Path

import httpx
import pytest

from syllabus.contracts import ArtifactStore
from syllabus.services.runtime._store import (
    InvalidKey,
    LocalStore,
    ObjectNotFound,
    S3Store,
    StoreError,
    validate_key,
)

MiB = 1 << 20
BAD_KEYS = ["../x", "/abs", "a/../b", "a//b", ""]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return request.getfixturevalue("s3_store")


def fetch(url: str) -> bytes:
    if url.startswith("file://"):
        with urllib.request.urlopen(url) as response:
            return response.read()
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.content


class PatternReader(io.RawIOBase):
    """``size`` pseudo-random bytes, made as they are read (never held whole), like a
    pipe: its length is unknown to the reader. Keeps a running sha256."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self._left = size
        self._rng = random.Random(seed)
        self.sha256 = hashlib.sha256()
        self.max_read = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        self.max_read = max(self.max_read, n)
        data = self._rng.randbytes(n)
        self._left -= n
        self.sha256.update(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a", "documents/0f3a", "chunks/ab.json", "datasets/c/v=1/train.jsonl",
                                 "models/m-1/_x.bin", "...", ".hidden/x"])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", [*BAD_KEYS, "a/", "./a", "a/.", "..", "a\\b", "a\x00b", "a b",
                                 "a/b?c", "é", "x" * 256, "a/" * 600 + "a"])
def test_invalid_keys_name_the_key(key: str) -> None:
    with pytest.raises(InvalidKey) as info:
        validate_key(key)
    assert repr(key)[:60].rstrip("'") in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_string_key() -> None:
    with pytest.raises(InvalidKey):
        validate_key(b"a")  # type: ignore[arg-type]


# --- both stores -------------------------------------------------------------------------


def test_satisfies_protocol(store: ArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)


def test_put_get_bytes(store: ArtifactStore) -> None:
    store.put("chunks/one.json", b'{"text": "hello"}', content_type="application/json")
    store.put("empty", b"")
    store.put("view", memoryview(b"from a view"))
    assert store.get("chunks/one.json") == b'{"text": "hello"}'
    assert store.get("empty") == b""
    assert store.get("view") == b"from a view"
    assert b"".join(store.stream("chunks/one.json", chunk_size=4)) == b'{"text": "hello"}'
    assert [len(c) for c in store.stream("chunks/one.json", chunk_size=4)][:4] == [4, 4, 4, 4]


def test_put_small_file_object_with_and_without_length(store: ArtifactStore) -> None:
    store.put("a/known", io.BytesIO(b"0123456789"), length=10)
    store.put("a/unknown", io.BytesIO(b"abcdef"))
    assert store.get("a/known") == b"0123456789"
    assert store.get("a/unknown") == b"abcdef"


def test_put_stream_shorter_than_length_keeps_old_object(store: ArtifactStore) -> None:
    store.put("k", b"old")
    with pytest.raises(StoreError, match="'k'"):
        store.put("k", io.BytesIO(b"abc"), length=10)
    assert store.get("k") == b"old"
    assert list(store.list()) == ["k"]


def test_put_length_mismatch_for_bytes(store: ArtifactStore) -> None:
    with pytest.raises(ValueError, match="length"):
        store.put("x", b"abc", length=4)
    assert not store.exists("x")


def test_large_stream_unknown_length_low_memory(
    request: pytest.FixtureRequest, store: ArtifactStore
) -> None:
    size = 40 * MiB
    if isinstance(store, S3Store):
        # Small parts, so that holding the whole object would show up against the bound.
        store = request.getfixturevalue("s3_server").store(part_size=5 * MiB)
        bound = 3 * 5 * MiB + 4 * MiB
    else:
        bound = 4 * MiB
    reader = PatternReader(size)
    tracemalloc.start()
    try:
        store.put("models/m1/weights.bin", reader)
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = hashlib.sha256()
        n = 0
        for chunk in store.stream("models/m1/weights.bin", chunk_size=MiB):
            assert len(chunk) <= MiB
            got.update(chunk)
            n += len(chunk)
        _, stream_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == size
    assert got.hexdigest() == reader.sha256.hexdigest()
    assert put_peak < bound, f"put held {put_peak / MiB:.1f} MiB"
    assert stream_peak < 4 * MiB, f"stream held {stream_peak / MiB:.1f} MiB"


def test_exists(store: ArtifactStore) -> None:
    assert not store.exists("documents/d1")
    store.put("documents/d1", b"x")
    assert store.exists("documents/d1")
    assert not store.exists("documents")  # a "directory" is not an object
    assert not store.exists("documents/d")


def test_list_with_prefix(store: ArtifactStore) -> None:
    keys = ["chunks/a.json", "chunks/b.json", "chunks/sub/c.json", "chunks-old/x",
            "chunksx", "documents/d1", "a-c", "a/b", "a0"]
    for key in keys:
        store.put(key, key.encode())
    assert list(store.list("chunks/")) == ["chunks/a.json", "chunks/b.json", "chunks/sub/c.json"]
    assert list(store.list("chunks")) == ["chunks-old/x", "chunks/a.json", "chunks/b.json",
                                          "chunks/sub/c.json", "chunksx"]
    assert list(store.list("chunks/sub")) == ["chunks/sub/c.json"]
    assert list(store.list("chunks/a")) == ["chunks/a.json"]
    assert list(store.list("nothing/")) == []
    assert list(store.list()) == sorted(keys)
    assert list(store.list("")) == sorted(keys)


def test_get_missing_names_the_key(store: ArtifactStore) -> None:
    for call in (store.get, store.stream):
        with pytest.raises(ObjectNotFound) as info:
            call("chunks/missing.json")
        assert "chunks/missing.json" in str(info.value)
        assert info.value.key == "chunks/missing.json"
        assert isinstance(info.value, KeyError)
        assert isinstance(info.value, StoreError)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_rejected_by_every_method(store: ArtifactStore, key: str) -> None:
    calls = {
        "put": lambda: store.put(key, b"x"),
        "put-stream": lambda: store.put(key, io.BytesIO(b"x")),
        "get": lambda: store.get(key),
        "stream": lambda: store.stream(key),  # raises now, not on first next()
        "exists": lambda: store.exists(key),
        "presign": lambda: store.presign(key),
    }
    if key:  # "" is the whole store for list
        calls["list"] = lambda: store.list(key)  # raises now, not on first next()
    for name, call in calls.items():
        with pytest.raises(InvalidKey, match="invalid store key"):
            call()
            pytest.fail(f"{name} accepted {key!r}")
    assert list(store.list()) == []


def test_presign_fetches_the_object(store: ArtifactStore) -> None:
    store.put("datasets/c/v1/train.jsonl", b'{"messages": []}\n')
    url = store.presign("datasets/c/v1/train.jsonl", expires_seconds=60)
    assert fetch(url) == b'{"messages": []}\n'
    with pytest.raises(ValueError):
        store.presign("datasets/c/v1/train.jsonl", expires_seconds=0)
    with pytest.raises(ValueError):
        store.presign("datasets/c/v1/train.jsonl", expires_seconds=8 * 24 * 3600)


def test_overwrite_is_idempotent(store: ArtifactStore) -> None:
    store.put("cache/teacher/k.json", b"v1")
    store.put("cache/teacher/k.json", b"v1")
    assert store.get("cache/teacher/k.json") == b"v1"
    store.put("cache/teacher/k.json", io.BytesIO(b"v2-longer"))
    assert store.get("cache/teacher/k.json") == b"v2-longer"
    store.put("cache/teacher/k.json", b"3")
    assert store.get("cache/teacher/k.json") == b"3"
    assert list(store.list()) == ["cache/teacher/k.json"]


def test_stream_close_early_then_reuse(store: ArtifactStore) -> None:
    store.put("big", os.urandom(3 * MiB))
    it = store.stream("big", chunk_size=64 * 1024)
    assert len(next(it)) == 64 * 1024
    it.close()  # type: ignore[attr-defined]
    assert list(it) == []
    for _ in range(15):  # each closes its response on leaving the block
        with store.stream("big", chunk_size=MiB) as s:  # type: ignore[attr-defined]
            next(s)
    assert len(store.get("big")) == 3 * MiB


def test_ping(store: ArtifactStore, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A store that works answers the readiness probe; one that cannot work raises
    ``StoreError`` naming why (a missing root; a missing bucket it may not create)."""
    store.ping()  # type: ignore[attr-defined]
    if isinstance(store, LocalStore):
        broken = LocalStore(tmp_path / "gone")
        shutil.rmtree(tmp_path / "gone")
        with pytest.raises(StoreError, match="is not a directory"):
            broken.ping()
    else:
        s3 = request.getfixturevalue("s3_server")
        missing = s3.store(create_bucket=False)
        with pytest.raises(StoreError, match="does not exist"):
            missing.ping()


# --- the directory -----------------------------------------------------------------------


def test_local_layout_and_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("chunks/x.json", PatternReader(3 * MiB))
    store.put("chunks/y.json", b"y")
    assert sorted(p.name for p in (tmp_path / "s" / "chunks").iterdir()) == ["x.json", "y.json"]
    assert (tmp_path / "s" / "chunks" / "y.json").read_bytes() == b"y"
    assert store.presign("chunks/y.json") == (tmp_path / "s" / "chunks" / "y.json").resolve().as_uri()
    assert "LocalStore(root=" in repr(store)


def test_local_failed_write_leaves_old_object_and_no_temp(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("k", b"old")

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        store.put("k", Broken())
    with pytest.raises(StoreError, match="short"):
        store.put("k", io.BytesIO(b"abc"), length=10)
    assert store.get("k") == b"old"
    assert os.listdir(tmp_path / "s") == ["k"]


def test_local_symlinks_cannot_escape_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "s"
    store = LocalStore(root)
    (root / "evil").symlink_to(outside, target_is_directory=True)
    (root / "evil-file").symlink_to(outside / "secret")
    for call in (lambda: store.get("evil/secret"), lambda: store.put("evil/new", b"x"),
                 lambda: store.exists("evil/secret"), lambda: store.stream("evil/secret"),
                 lambda: store.get("evil-file"), lambda: store.presign("evil/secret"),
                 lambda: store.list("evil/")):
        with pytest.raises(InvalidKey, match="outside the store root"):
            call()
    assert not (outside / "new").exists()
    store.put("real", b"r")
    assert list(store.list()) == ["real"]  # neither link is listed


def test_local_key_conflicts_are_store_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("a", b"file")
    with pytest.raises(StoreError, match="'a/b'"):
        store.put("a/b", b"under a file")
    store.put("d/x", b"x")
    with pytest.raises(StoreError, match="'d'"):
        store.put("d", b"over a directory")
    with pytest.raises(ObjectNotFound):
        store.get("d")
    with pytest.raises(ObjectNotFound):
        store.get("a/b")


def test_local_ping_fails_without_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.ping()
    (tmp_path / "s").rmdir()
    with pytest.raises(StoreError, match="not a directory"):
        store.ping()


# --- S3 --------------------------------------------------------------------------------------


def test_s3_repr_and_errors_hide_the_secret(s3_server) -> None:  # type: ignore[no-untyped-def]
    store = s3_server.store()
    assert s3_server.secret_key not in repr(store)
    assert repr(store) == f"S3Store(endpoint={s3_server.endpoint!r}, bucket={store.bucket!r})"
    wrong = S3Store(endpoint=s3_server.endpoint, access_key=s3_server.access_key,
                    secret_key="not-the-" + s3_server.secret_key, bucket=store.bucket)
    with pytest.raises(StoreError) as info:
        wrong.ping()
    assert s3_server.secret_key not in str(info.value)
    with pytest.raises(StoreError) as info:
        wrong.get("k")
    assert not isinstance(info.value, ObjectNotFound)
    assert s3_server.secret_key not in str(info.value)


def test_s3_ping_unreachable_endpoint_fails_fast(s3_server) -> None:  # type: ignore[no-untyped-def]
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        store = S3Store(endpoint=f"127.0.0.1:{port}", access_key="k", secret_key="s3cr3t",
                        bucket="bucket")
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            store.ping()
        assert time.monotonic() - started < 5
    assert "s3cr3t" not in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_s3_missing_bucket_without_create(s3_server) -> None:  # type: ignore[no-untyped-def]
    store = s3_server.store(create_bucket=False)
    with pytest.raises(StoreError, match="does not exist"):
        store.ping()
    with pytest.raises(StoreError) as info:
        store.get("k")
    assert not isinstance(info.value, ObjectNotFound)  # a missing bucket is not a missing key


def test_s3_bucket_created_once_and_shared(s3_server) -> None:  # type: ignore[no-untyped-def]
    first = s3_server.store()
    first.ping()
    first.put("k", b"v")
    second = s3_server.store(bucket=first.bucket)  # exists already: no error
    assert second.get("k") == b"v"
    assert (s3_server.root / first.bucket / "k").read_bytes() == b"v"


def test_s3_endpoint_forms() -> None:
    store = S3Store(endpoint="https://s3.example.com/", access_key="k", secret_key="s",
                    bucket="bkt", create_bucket=False)
    assert (store.endpoint, store.secure) == ("s3.example.com", True)
    for bad in ("http://h/path", "", "u:p@h"):
        with pytest.raises(ValueError):
            S3Store(endpoint=bad, access_key="k", secret_key="s", bucket="bkt")
    for bad_bucket in ("b", "Upper", "under_score", "-lead"):
        with pytest.raises(ValueError):
            S3Store(endpoint="h:1", access_key="k", secret_key="s", bucket=bad_bucket)
    with pytest.raises(ValueError):
        S3Store(endpoint="h:1", access_key="k", secret_key="s", bucket="bkt", part_size=MiB)
