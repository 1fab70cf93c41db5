"""``POST /v1/documents``: multipart upload of one or more files (field ``file``) with
optional ``collection`` and ``run_id`` fields. Answers 202 with one result per file; 400
when every file was refused, or for a bad field (``invalid_collection``,
``invalid_run_id``, a body that is not valid multipart); 413 ``too_large`` when the
request is larger than the size limit allows; 415 when it is not multipart.

Sizes are bounded while the body streams in, whatever ``Content-Length`` says or when it
is absent (``Transfer-Encoding: chunked``): the whole body may be at most
``ingest.max_file_bytes * MAX_FILES + 1 MiB`` (past it, reading stops and the answer is
413), and no more than ``ingest.max_file_bytes`` of one file is ever spooled: the rest of
a larger file is counted and hashed, not kept, and the file is refused as ``too_large``
with its real size, like the others.

An OpenAPI/Swagger spec among the files is recognised by its content and goes to the
api-annotator (``kind: "spec"`` in its result); an invalid one is refused with the error
naming the JSON path of the problem. File names are only recorded, never used as paths:
one with a folder, ``..`` or a drive is refused."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from syllabus.contracts import (
    COLLECTION_PATTERN,
    RUN_ID_PATTERN,
    RejectionReason,
    is_valid_collection,
    is_valid_run_id,
)

from ..runtime import Runtime, error_response
from ..runtime._http import ApiRoute, error_responses, json_body
from ._submit import SubmitResult, refuse_on_submit, submit_file

__all__ = ["MAX_FILES", "body_limit", "http_routes"]

MAX_FILES = 100
#: room for the form fields and the multipart framing, over the files themselves
_SLACK = 1 << 20


def body_limit(max_file_bytes: int) -> int:
    """The largest request body ``POST /v1/documents`` reads."""
    return max_file_bytes * MAX_FILES + _SLACK


class _TooLarge(Exception):
    pass


class _CappedUpload(UploadFile):
    """An uploaded file that keeps at most ``limit`` bytes; what comes past them is hashed
    and counted, not kept, so the file can be refused with its real size and id."""

    def __init__(self, upload: UploadFile, limit: int) -> None:
        super().__init__(upload.file, size=0, filename=upload.filename, headers=upload.headers)
        self.limit = limit
        self.streamed = 0
        self.sha = hashlib.sha256()

    @property
    def too_large(self) -> bool:
        return self.streamed > self.limit

    async def write(self, data: bytes) -> None:
        self.sha.update(data)
        room = self.limit - self.streamed
        self.streamed += len(data)
        if room > 0:
            await super().write(data[:room])


class _CappedParser(MultiPartParser):
    """Starlette's multipart parser, with every file a ``_CappedUpload``."""

    def __init__(self, *args: Any, file_limit: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.file_limit = file_limit

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is not None:
            part.file = _CappedUpload(part.file, self.file_limit)


async def _counted(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise _TooLarge
        yield chunk


def _text_field(form: FormData, name: str) -> str | None:
    """The field's text; ``None`` when it is absent (an empty field is not absent: it is
    checked, and refused, like any other value)."""
    value = form.get(name)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{name} must be a text field, not a file")


_UPLOAD_SCHEMAS = {
    "DocumentResult": {
        "type": "object",
        "required": ["filename", "doc_id", "outcome", "size_bytes", "reason", "detail", "kind"],
        "properties": {
            "filename": {"type": "string"},
            "doc_id": {"type": "string", "description": "sha256 of the file's bytes"},
            "outcome": {"type": "string", "enum": ["submitted", "duplicate", "rejected"]},
            "size_bytes": {"type": "integer", "minimum": 0},
            "reason": {"type": ["string", "null"],
                       "enum": [None, *(r.value for r in RejectionReason)],
                       "description": "why a rejected file was refused"},
            "detail": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": ["document", "spec"]},
        },
    },
    "UploadResult": {
        "type": "object", "required": ["collection", "documents"],
        "properties": {"collection": {"type": "string"},
                       "documents": {"type": "array",
                                     "items": {"$ref": "#/components/schemas/DocumentResult"}}},
    },
}


def _upload_docs(limit: int) -> dict[str, Any]:
    result = {"$ref": "#/components/schemas/UploadResult"}
    return {"post": {
        "summary": "Upload documents (and OpenAPI specs) for ingest",
        "description": f"Each file may be at most {limit} bytes (ingest.max_file_bytes), at "
                       f"most {MAX_FILES} files, the whole body at most "
                       f"{body_limit(limit)} bytes.",
        "requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {
                "type": "object", "required": ["file"],
                "properties": {
                    "file": {"type": "array", "maxItems": MAX_FILES,
                             "items": {"type": "string", "format": "binary"}},
                    "collection": {"type": "string", "pattern": COLLECTION_PATTERN,
                                   "description": "default: the 'collection' setting"},
                    "run_id": {"type": "string", "pattern": RUN_ID_PATTERN},
                },
            },
            "encoding": {"file": {"contentType": "application/octet-stream"}},
        }}},
        "responses": {
            "202": json_body(result, "accepted: one result per file"),
            "400": {"description": "every file was refused (one result per file), or a "
                                   "bad field or body (an error)",
                    "content": {"application/json": {"schema": {"anyOf": [
                        result, {"$ref": "#/components/schemas/Error"}]}}}},
            **error_responses(413, 415),
        },
    }}


def http_routes(rt: Runtime) -> list[ApiRoute]:
    limit = rt.settings.ingest.max_file_bytes
    cap = body_limit(limit)

    def too_large() -> Response:
        return error_response(413, f"the request body is over {cap} bytes; the limit is "
                              f"{limit} bytes per file (ingest.max_file_bytes) and "
                              f"{MAX_FILES} files", code="too_large")

    async def upload(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cap:
            return too_large()
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error_response(415, "send the files as multipart/form-data in field 'file'",
                                  code="unsupported_media_type")
        parser = _CappedParser(request.headers, _counted(request.stream(), cap),
                               max_files=MAX_FILES, max_fields=16, file_limit=limit)
        try:
            form = await parser.parse()
        except _TooLarge:
            return too_large()
        except ClientDisconnect:
            return error_response(400, "the client disconnected while sending the body",
                                  code="bad_request")
        except (MultiPartException, ValueError, KeyError) as exc:
            return error_response(400, f"could not read the multipart body: {exc}",
                                  code="bad_request")
        try:
            try:
                collection = _text_field(form, "collection")
                if collection is None:
                    collection = rt.settings.collection
                run_id = _text_field(form, "run_id")
            except ValueError as exc:
                return error_response(400, str(exc), code="bad_request")
            if not is_valid_collection(collection):
                return error_response(400, f"invalid collection name {collection!r}: use "
                                      "1-64 lower-case letters, digits, '-' and '_', "
                                      "starting with a letter or digit",
                                      code="invalid_collection", param="collection")
            if run_id is not None and not is_valid_run_id(run_id):
                return error_response(400, f"invalid run_id {run_id!r}: use 1-128 letters, "
                                      "digits, '.', '_', ':' and '-', starting with a "
                                      "letter or digit", code="invalid_run_id",
                                      param="run_id")
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                return error_response(400, "no files: send them in the multipart field 'file'",
                                      code="no_files", param="file")
            results = []
            for f in files:
                if isinstance(f, _CappedUpload) and f.too_large:
                    res = await _refuse_large(rt, f, collection=collection, run_id=run_id)
                else:
                    res = await submit_file(rt, f.file, filename=f.filename or "",
                                            collection=collection, run_id=run_id,
                                            media_type=f.content_type)
                results.append(res.__dict__)
        finally:
            await form.close()
        status = 400 if all(r["outcome"] == "rejected" for r in results) else 202
        return JSONResponse({"collection": collection, "documents": results},
                            status_code=status)

    return [ApiRoute("/v1/documents", upload, methods=["POST"], openapi=_upload_docs(limit),
                     schemas=_UPLOAD_SCHEMAS)]


async def _refuse_large(rt: Runtime, upload: _CappedUpload, *, collection: str,
                        run_id: str | None) -> SubmitResult:
    """A file larger than ``ingest.max_file_bytes`` (only its start was kept): refused as
    ``submit_file`` would refuse it, with its whole size and hash."""
    refused = await refuse_on_submit(rt, filename=upload.filename or "",
                                     doc_id=upload.sha.hexdigest(), size=upload.streamed,
                                     collection=collection, run_id=run_id)
    if refused is None:  # over the limit, so never: say so rather than accept it
        raise ValueError(f"{upload.filename!r} is over the size limit but was not refused")
    return refused
