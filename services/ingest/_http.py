"""``POST /v1/documents``: multipart upload of one or more files (field ``file``) with an
optional ``collection`` field. Answers 202 with one result per file; 400 when every file
was refused; 413 when the request is larger than the size limit allows.

An OpenAPI/Swagger spec among the files is recognised by its content and goes to the
api-annotator (``kind: "spec"`` in its result); an invalid one is refused with the error
naming the JSON path of the problem. File names are only recorded, never used as paths:
one with a folder, ``..`` or a drive is refused."""

from __future__ import annotations

import re

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syllabus.contracts import COLLECTION_PATTERN

from ..runtime import Runtime, error_response
from ._submit import submit_file

__all__ = ["http_routes"]

MAX_FILES = 100


def http_routes(rt: Runtime) -> list[Route]:
    limit = rt.settings.ingest.max_file_bytes

    async def upload(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit * MAX_FILES + (1 << 20):
            return error_response(413, f"request body is {length} bytes; the limit is "
                                  f"{limit} bytes per file", code="too_large")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error_response(415, "send the files as multipart/form-data in field 'file'",
                                  code="unsupported_media_type")
        try:
            form = await request.form(max_files=MAX_FILES, max_fields=16)
        except Exception as exc:
            return error_response(400, f"could not read the multipart body: {exc}",
                                  code="bad_request")
        try:
            collection = str(form.get("collection") or rt.settings.collection)
            if not re.match(COLLECTION_PATTERN, collection):
                return error_response(400, f"invalid collection name {collection!r}: use "
                                      "lower-case letters, digits, '-' and '_'",
                                      code="invalid_collection")
            run_id = str(form.get("run_id") or "") or None
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                return error_response(400, "no files: send them in the multipart field 'file'",
                                      code="no_files")
            results = []
            for f in files:
                res = await submit_file(rt, f.file, filename=f.filename or "",
                                        collection=collection, run_id=run_id,
                                        media_type=f.content_type)
                results.append(res.__dict__)
        finally:
            await form.close()
        status = 400 if all(r["outcome"] == "rejected" for r in results) else 202
        return JSONResponse({"collection": collection, "documents": results},
                            status_code=status)

    return [Route("/v1/documents", upload, methods=["POST"])]
