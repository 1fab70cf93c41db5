"""The artifact store: a directory (``LocalStore``) or an S3 bucket (``S3Store``).

Both satisfy ``syllabus.contracts.ArtifactStore``. Keys are relative ``/``-separated paths
of safe characters; every method validates its key before it touches anything, so a key
can never name a file outside the store or an object outside the bucket.

Neither store ever holds a whole stream in memory: ``put`` copies a file object in
chunks (parts, for S3) and ``stream`` yields chunks.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

__all__ = [
    "InvalidKey",
    "LocalStore",
    "ObjectNotFound",
    "S3Store",
    "StoreError",
    "validate_key",
]

#: the longest key S3 accepts (bytes; keys are ASCII here)
MAX_KEY_LENGTH = 1024
#: the longest file name most file systems accept
MAX_SEGMENT_LENGTH = 255

_SEGMENT = re.compile(r"[A-Za-z0-9._=-]+")
_COPY_CHUNK = 1 << 20
_MiB = 1 << 20
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600


# --- errors and keys -----------------------------------------------------------------


class StoreError(Exception):
    """The store could not do what was asked: unreachable, refused, or out of space."""


class ObjectNotFound(StoreError, KeyError):
    """No object is stored at ``key``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object at key {key!r}")
        self.key = key

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidKey(ValueError):
    """A key (or list prefix) that is not a safe relative path."""

    def __init__(self, key: object, reason: str) -> None:
        super().__init__(f"invalid store key {key!r}: {reason}")
        self.key = key
        self.reason = reason


def validate_key(key: str) -> str:
    """Return ``key`` when it is a relative ``/``-separated path of safe segments.

    Every segment matches ``[A-Za-z0-9._=-]+`` and is neither ``.`` nor ``..``; so a key
    is never empty or absolute, never has ``//``, a trailing ``/``, a backslash or a NUL.
    Raises ``InvalidKey`` naming the key otherwise.
    """
    if not isinstance(key, str):
        raise InvalidKey(key, f"must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey(key, "empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(key, f"longer than {MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise InvalidKey(key, "absolute; keys are relative paths")
    for segment in key.split("/"):
        if not segment:
            raise InvalidKey(key, "empty path segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise InvalidKey(key, f"{segment!r} path segment")
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKey(key, f"segment {segment!r} has characters outside [A-Za-z0-9._=-]")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidKey(key, f"segment longer than {MAX_SEGMENT_LENGTH} characters")
    return key


def _validate_prefix(prefix: str) -> str:
    """A list prefix is ``""``, a key, or a key followed by ``/``."""
    if not isinstance(prefix, str):
        raise InvalidKey(prefix, f"prefix must be a str, not {type(prefix).__name__}")
    if prefix == "":
        return prefix
    body = prefix[:-1] if prefix.endswith("/") else prefix
    try:
        validate_key(body)
    except InvalidKey as exc:
        raise InvalidKey(prefix, f"bad list prefix: {exc.reason}") from None
    return prefix


def _check_expires(expires_seconds: int) -> int:
    if not 1 <= expires_seconds <= _MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_seconds must be 1..{_MAX_PRESIGN_SECONDS}, got {expires_seconds}")
    return expires_seconds


def _check_chunk_size(chunk_size: int) -> int:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return chunk_size


def _is_bytes(data: object) -> bool:
    return isinstance(data, bytes | bytearray | memoryview)


class _ChunkIterator(Iterator[bytes]):
    """Yields chunks, and closes the underlying resource once: when exhausted, on error,
    on ``close()``, on leaving a ``with`` block, or when garbage-collected."""

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None],
                 wrap_error: Callable[[BaseException], BaseException | None]) -> None:
        self._chunks = chunks
        self._close = close
        self._wrap_error = wrap_error
        self._closed = False

    def __iter__(self) -> _ChunkIterator:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        try:
            return next(self._chunks)
        except StopIteration:
            self.close()
            raise
        except Exception as exc:
            self.close()
            wrapped = self._wrap_error(exc)
            if wrapped is None:
                raise
            raise wrapped from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> _ChunkIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


# --- the local directory -------------------------------------------------------------


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once, at import: os.umask() is process-wide


class LocalStore:
    """An artifact store in a directory: key ``a/b.json`` is the file ``<root>/a/b.json``.

    Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a
    reader sees the old object or the new one, never a partial one. Temporary files have a
    ``~`` in their names, which no key can, so ``list`` never shows them.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store root {str(path)!r}: {exc}") from exc
        self.root = path.resolve()

    def __repr__(self) -> str:
        return f"LocalStore(root={str(self.root)!r})"

    # - paths -

    def _inside(self, path: Path) -> bool:
        return path == self.root or path.is_relative_to(self.root)

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = self.root / key
        # validate_key rules out '..'; this also catches a symlink that leads outside.
        if not self._inside(path.resolve()):
            raise InvalidKey(key, "resolves outside the store root")
        return path

    # - the protocol -

    def put(self, key: str, data: bytes | IO[bytes], *, length: int | None = None,
            content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        if _is_bytes(data) and length is not None and length != len(data):  # type: ignore[arg-type]
            raise ValueError(f"length={length} but {len(data)} bytes given for {key!r}")  # type: ignore[arg-type]
        if length is not None and length < 0:
            length = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self._inside(path.parent.resolve()):
                raise InvalidKey(key, "resolves outside the store root")
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".~tmp")
        except InvalidKey:
            raise
        except OSError as exc:
            raise StoreError(f"cannot write {key!r} in {str(self.root)!r}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                if _is_bytes(data):
                    out.write(data)  # type: ignore[arg-type]
                elif length is None:
                    shutil.copyfileobj(data, out, _COPY_CHUNK)  # type: ignore[misc]
                else:
                    _copy_exactly(data, out, length, key)  # type: ignore[arg-type]
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o666 & ~_UMASK)
            os.replace(tmp_name, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write {key!r} in {str(self.root)!r}: {exc}") from exc
            raise

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StoreError(f"cannot read {key!r} in {str(self.root)!r}: {exc}") from exc

    def stream(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        _check_chunk_size(chunk_size)
        path = self._path(key)
        try:
            f = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StoreError(f"cannot read {key!r} in {str(self.root)!r}: {exc}") from exc

        def wrap(exc: BaseException) -> BaseException | None:
            if isinstance(exc, OSError):
                return StoreError(f"cannot read {key!r} in {str(self.root)!r}: {exc}")
            return None

        return _ChunkIterator(iter(lambda: f.read(chunk_size), b""), f.close, wrap)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with ``prefix``, in sorted order. The prefix is checked now;
        the directory is walked lazily, in order, one directory at a time."""
        _validate_prefix(prefix)
        directory, _, partial = prefix.rpartition("/")
        base = self.root / directory if directory else self.root
        if not self._inside(base.resolve()):
            raise InvalidKey(prefix, "resolves outside the store root")
        return self._walk(base, f"{directory}/" if directory else "", partial)

    def presign(self, key: str, *, expires_seconds: int = 3600) -> str:
        """A ``file://`` URI; a directory needs no signature, so ``expires_seconds`` is only
        checked, for parity with ``S3Store``."""
        _check_expires(expires_seconds)
        return self._path(key).as_uri()

    def ping(self) -> None:
        """Raise ``StoreError`` unless the root is a directory this process can write to."""
        if not self.root.is_dir():
            raise StoreError(f"store root {str(self.root)!r} is not a directory")
        try:
            fd, name = tempfile.mkstemp(dir=self.root, prefix=".ping.", suffix=".~tmp")
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise StoreError(f"store root {str(self.root)!r} is not writable: {exc}") from exc

    # - listing -

    def _walk(self, directory: Path, rel: str, name_prefix: str = "") -> Iterator[str]:
        # Sorting siblings by name, with '/' appended to directories, yields keys in plain
        # string order: 'a-c' < 'a/b' < 'a0' because '-' < '/' < '0'.
        try:
            with os.scandir(directory) as it:
                entries = [e for e in it if e.name.startswith(name_prefix)]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StoreError(f"cannot list {str(directory)!r}: {exc}") from exc
        ordered = sorted(
            ((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in entries
        )
        for sort_name, entry in ordered:
            key = rel + entry.name
            if sort_name.endswith("/"):
                yield from self._walk(Path(entry.path), key + "/")
            elif self._listable(key, entry):
                yield key

    def _listable(self, key: str, entry: os.DirEntry[str]) -> bool:
        try:
            validate_key(key)
        except InvalidKey:
            return False  # temporary files, and anything else no key could name
        if entry.is_symlink():
            target = Path(entry.path).resolve()
            return self._inside(target) and target.is_file()
        return entry.is_file(follow_symlinks=False)


def _copy_exactly(src: IO[bytes], dst: IO[bytes], length: int, key: str) -> None:
    remaining = length
    while remaining:
        chunk = src.read(min(remaining, _COPY_CHUNK))
        if not chunk:
            raise StoreError(f"stream for {key!r} ended {remaining} bytes short of length={length}")
        dst.write(chunk)
        remaining -= len(chunk)


# --- S3 --------------------------------------------------------------------------------

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ERROR_CODE = re.compile(r"<Code>([^<]+)</Code>")
_MIN_PART_SIZE = 5 * _MiB
_MAX_PART_SIZE = 5 * 1024 * _MiB
_MAX_PARTS = 10_000


class S3Store:
    """An artifact store in an S3 bucket, through the MinIO SDK.

    Works against MinIO, AWS S3, SeaweedFS and ``rclone serve s3``. ``endpoint`` is
    ``host:port``; a ``http://`` or ``https://`` prefix is accepted and decides ``secure``.
    The bucket is created on first use when ``create_bucket`` is true.

    Uploads of unknown length are multipart, ``part_size`` at a time, with
    ``parallel_uploads`` parts in flight; so an upload holds about
    ``(parallel_uploads + 1) * part_size`` bytes, whatever the object's size. One part at a
    time (the default) keeps the parts in order, which servers that stream parts to their
    backend (``rclone serve s3``) need to avoid buffering them.

    The credentials live only inside the SDK client: they are never in ``repr``, in an
    error message or in a log line.
    """

    def __init__(self, *, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False, region: str | None = None, create_bucket: bool = True,
                 part_size: int = 16 * _MiB, parallel_uploads: int = 1) -> None:
        from minio import Minio

        self.endpoint, self.secure = _split_endpoint(endpoint, secure)
        if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        if not _MIN_PART_SIZE <= part_size <= _MAX_PART_SIZE:
            raise ValueError(f"part_size must be 5 MiB..5 GiB, got {part_size}")
        if parallel_uploads < 1:
            raise ValueError(f"parallel_uploads must be at least 1, got {parallel_uploads}")
        self.bucket = bucket
        self.region = region
        self.part_size = part_size
        self.parallel_uploads = parallel_uploads
        self._create_bucket = create_bucket
        self._bucket_ready = not create_bucket
        self._bucket_lock = threading.Lock()

        def client(http: Any) -> Minio:
            return Minio(endpoint=self.endpoint, access_key=access_key, secret_key=secret_key,
                         secure=self.secure, region=region, http_client=http)

        # The SDK's own default waits 5 minutes to connect; a readiness probe cannot.
        self._client = client(_http_client(connect=10.0, read=300.0, retries=5))
        self._ping_client = client(_http_client(connect=3.0, read=5.0, retries=0))

    def __repr__(self) -> str:
        return f"S3Store(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    # - the protocol -

    def put(self, key: str, data: bytes | IO[bytes], *, length: int | None = None,
            content_type: str = "application/octet-stream") -> None:
        validate_key(key)
        if _is_bytes(data):
            if length is not None and length != len(data):  # type: ignore[arg-type]
                raise ValueError(f"length={length} but {len(data)} bytes given for {key!r}")  # type: ignore[arg-type]
            body: IO[bytes] = io.BytesIO(bytes(data))  # type: ignore[arg-type]
            length = len(data)  # type: ignore[arg-type]
        else:
            body = data  # type: ignore[assignment]
            if length is None or length < 0:
                length = -1
        if length < 0:
            part_size = self.part_size  # streamed: read one part at a time
        elif length <= _MAX_PARTS * self.part_size:
            part_size = self.part_size
        else:
            part_size = 0  # let the SDK pick a part size that fits in 10,000 parts
        self._ensure_bucket()
        try:
            self._client.put_object(
                bucket_name=self.bucket, object_name=key, data=body, length=length,
                content_type=content_type, part_size=part_size,
                num_parallel_uploads=self.parallel_uploads,
            )
        except _errors() as exc:
            raise self._error("put", key, exc) from exc

    def get(self, key: str) -> bytes:
        validate_key(key)
        self._ensure_bucket()
        response = self._open(key)
        try:
            return response.read()
        except _errors() as exc:
            raise self._error("get", key, exc) from exc
        finally:
            response.close()
            response.release_conn()

    def stream(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Chunks of the object. The request is made now, so a missing key raises
        ``ObjectNotFound`` here; the connection is released when the iterator is
        exhausted, closed, or dropped."""
        _check_chunk_size(chunk_size)
        validate_key(key)
        self._ensure_bucket()
        response = self._open(key)

        def close() -> None:
            response.close()
            response.release_conn()

        def wrap(exc: BaseException) -> BaseException | None:
            return self._error("stream", key, exc) if isinstance(exc, _errors()) else None

        return _ChunkIterator(iter(response.stream(chunk_size)), close, wrap)

    def exists(self, key: str) -> bool:
        validate_key(key)
        self._ensure_bucket()
        try:
            self._client.stat_object(bucket_name=self.bucket, object_name=key)
        except _errors() as exc:
            if _error_code(exc) in ("NoSuchKey", "NotFound"):
                return False
            raise self._error("stat", key, exc) from exc
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with ``prefix``, in the server's (sorted) order. The prefix is
        checked now; pages are fetched as the iterator is consumed."""
        _validate_prefix(prefix)
        self._ensure_bucket()
        return self._list(prefix)

    def presign(self, key: str, *, expires_seconds: int = 3600) -> str:
        validate_key(key)
        _check_expires(expires_seconds)
        self._ensure_bucket()
        try:
            return self._client.presigned_get_object(
                bucket_name=self.bucket, object_name=key,
                expires=timedelta(seconds=expires_seconds),
            )
        except _errors() as exc:
            raise self._error("presign", key, exc) from exc

    def ping(self) -> None:
        """Raise ``StoreError`` unless the endpoint answers and the bucket is there (or,
        with ``create_bucket``, could be created). Short time-outs and no retries: this is
        what a readiness probe calls."""
        try:
            if self._bucket_ready:
                found = _bucket_exists(self._ping_client, self.bucket)
            else:
                self._ensure_bucket(self._ping_client)
                found = True
        except StoreError:
            raise
        except _errors() as exc:
            raise self._error("ping", None, exc) from exc
        if not found:
            raise StoreError(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}")

    # - helpers -

    def _open(self, key: str) -> Any:
        try:
            return self._client.get_object(bucket_name=self.bucket, object_name=key)
        except _errors() as exc:
            raise self._error("get", key, exc) from exc

    def _list(self, prefix: str) -> Iterator[str]:
        try:
            for obj in self._client.list_objects(bucket_name=self.bucket, prefix=prefix or None,
                                                 recursive=True):
                if not obj.is_dir and obj.object_name is not None:
                    yield obj.object_name
        except _errors() as exc:
            raise self._error("list", prefix, exc) from exc

    def _ensure_bucket(self, client: Any = None) -> None:
        if self._bucket_ready:
            return
        client = client or self._client
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                if not _bucket_exists(client, self.bucket):
                    try:
                        client.make_bucket(bucket_name=self.bucket, location=self.region)
                    except _errors() as exc:
                        # Another replica may have won the race.
                        if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise
            except _errors() as exc:
                raise self._error("create bucket", None, exc) from exc
            self._bucket_ready = True

    def _error(self, action: str, key: str | None, exc: BaseException) -> StoreError:
        code = _error_code(exc)
        if key is not None and code == "NoSuchKey" and action in ("get", "stream"):
            return ObjectNotFound(key)
        what = f" {key!r}" if key is not None else ""
        detail = code or f"{type(exc).__name__}: {exc}"
        if code and getattr(exc, "message", None):
            detail = f"{code}: {exc.message}"  # type: ignore[attr-defined]
        return StoreError(
            f"S3 {action}{what} failed (bucket {self.bucket!r} at {self.endpoint}): {detail}"
        )


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    for scheme, is_secure in (("https://", True), ("http://", False)):
        if endpoint.startswith(scheme):
            endpoint, secure = endpoint[len(scheme):], is_secure
            break
    endpoint = endpoint.rstrip("/")
    if not endpoint or "/" in endpoint or "@" in endpoint:
        raise ValueError(f"S3 endpoint must be host[:port], got {endpoint!r}")
    return endpoint, secure


def _errors() -> tuple[type[BaseException], ...]:
    from minio.error import MinioException
    from urllib3.exceptions import HTTPError

    return (MinioException, HTTPError, OSError)


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code. Some servers (``rclone serve s3``) send error bodies as
    ``text/xml``, which the SDK reports as ``InvalidResponseError`` with the body in the
    message, not as ``S3Error``; the code is read from that body."""
    from minio.error import InvalidResponseError, S3Error

    if isinstance(exc, S3Error):
        return exc.code
    if isinstance(exc, InvalidResponseError):
        match = _ERROR_CODE.search(str(exc))
        return match.group(1) if match else None
    return None


def _bucket_exists(client: Any, bucket: str) -> bool:
    try:
        return bool(client.bucket_exists(bucket_name=bucket))
    except _errors() as exc:
        # The SDK first asks for the bucket's location, which fails with a body
        # (NoSuchBucket) where a HEAD would have returned a bare 404.
        if _error_code(exc) == "NoSuchBucket":
            return False
        raise


def _http_client(*, connect: float, read: float, retries: int) -> Any:
    import certifi
    import urllib3

    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect, read=read),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=retries, backoff_factor=0.2,
                              status_forcelist=[500, 502, 503, 504]) if retries else False,
    )
