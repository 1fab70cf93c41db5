"""Submitting documents: the bytes go to the store under their hash (claim check), and a
``DocumentSubmitted`` carrying the key goes on the bus. Used by ``syllabus ingest``,
``syllabus run`` and ``POST /v1/documents``. A file refused here (an unsafe name, empty,
over the size limit) is published as ``DocumentRejected`` so the run report shows it.

An OpenAPI/Swagger spec (recognised by its content, whatever its name) is validated here,
stored under ``specs/<spec_id>`` and announced as ``ApiSpecSubmitted`` for the
api-annotator instead; an invalid one is rejected (``invalid_spec``) with the error that
names the file and the JSON path of the problem."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from syllabus.contracts import (
    ApiSpecSubmitted,
    DocumentSubmitted,
    RejectionReason,
    document_key,
    spec_key,
)

from ..runtime import Runtime
from ..runtime._openapi import SpecError, is_api_spec, load_spec
from ._documents import SNIFF_BYTES, Rejection, check_filename, hash_stream
from ._service import reject

__all__ = ["SubmitResult", "document_key", "iter_files", "refuse_on_submit", "submit_file",
           "submit_path"]


@dataclass
class SubmitResult:
    filename: str
    doc_id: str
    outcome: Literal["submitted", "duplicate", "rejected"]
    size_bytes: int = 0
    reason: str | None = None
    detail: str | None = None
    #: a document (for ingest) or an OpenAPI spec (for the api-annotator)
    kind: Literal["document", "spec"] = "document"


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and every non-hidden file under folders, in a stable order."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if not f.startswith("."):
                        yield Path(root) / f
        elif p.exists():
            yield p
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")


async def refuse_on_submit(rt: Runtime, *, filename: str, doc_id: str, size: int,
                           collection: str, run_id: str | None) -> SubmitResult | None:
    """The checks before a file is stored (its name, empty, over the size limit): a
    ``DocumentRejected`` and the refused result, or None when it may go on."""
    try:
        check_filename(filename)
        if size == 0:
            raise Rejection(RejectionReason.EMPTY, f"{filename} is empty (0 bytes)")
        limit = rt.settings.ingest.max_file_bytes
        if size > limit:
            raise Rejection(RejectionReason.TOO_LARGE, f"{filename} is {size} bytes, over the "
                            f"{limit}-byte limit (ingest.max_file_bytes)")
    except Rejection as rej:
        # an unsafe name is only ever shown quoted, never used as a path
        shown = filename if rej.reason is not RejectionReason.UNSAFE_NAME else repr(filename)
        await reject(rt, doc_id=doc_id, collection=collection, filename=shown,
                     reason=rej.reason, detail=rej.detail, run_id=run_id)
        return SubmitResult(filename=shown, doc_id=doc_id, outcome="rejected", size_bytes=size,
                            reason=rej.reason.value, detail=rej.detail)
    return None


async def submit_file(rt: Runtime, fh: IO[bytes], *, filename: str, collection: str,
                      run_id: str | None = None, media_type: str | None = None) -> SubmitResult:
    """Store ``fh`` (read in blocks) and announce it. ``fh`` must be seekable."""
    doc_id, size = await rt.to_thread(hash_stream, fh)
    refused = await refuse_on_submit(rt, filename=filename, doc_id=doc_id, size=size,
                                     collection=collection, run_id=run_id)
    if refused is not None:
        return refused

    fh.seek(0)
    head = await rt.to_thread(fh.read, SNIFF_BYTES)
    if is_api_spec(head, filename):
        return await _submit_spec(rt, fh, spec_id=doc_id, size=size, filename=filename,
                                  collection=collection, run_id=run_id)

    key = document_key(doc_id)
    if not await rt.to_thread(rt.store.exists, key):
        fh.seek(0)
        await rt.to_thread(rt.store.put, key, fh, length=size)
    event = DocumentSubmitted(doc_id=doc_id, collection=collection, filename=filename,
                              store_key=key, size_bytes=size, media_type=media_type,
                              run_id=run_id)
    ack = await rt.bus.publish(event)
    return SubmitResult(filename=filename, doc_id=doc_id, size_bytes=size,
                        outcome="duplicate" if getattr(ack, "duplicate", False) else "submitted")


async def _submit_spec(rt: Runtime, fh: IO[bytes], *, spec_id: str, size: int, filename: str,
                       collection: str, run_id: str | None) -> SubmitResult:
    """Validate a spec, store it under ``specs/<spec_id>`` and announce it."""
    fh.seek(0)
    data = await rt.to_thread(fh.read)
    try:
        loaded = await rt.to_thread(load_spec, data, filename=filename, spec_id=spec_id,
                                    base_url=rt.settings.api_annotator.base_url)
    except SpecError as exc:
        await reject(rt, doc_id=spec_id, collection=collection, filename=filename,
                     reason=RejectionReason.INVALID_SPEC, detail=str(exc), run_id=run_id)
        return SubmitResult(filename=filename, doc_id=spec_id, outcome="rejected",
                            size_bytes=size, reason=RejectionReason.INVALID_SPEC.value,
                            detail=str(exc), kind="spec")
    key = spec_key(spec_id)
    if not await rt.to_thread(rt.store.exists, key):
        await rt.to_thread(rt.store.put, key, data, content_type="application/octet-stream")
    event = ApiSpecSubmitted(spec_id=spec_id, collection=collection, filename=filename,
                             store_key=key,
                             allowed_hosts=list(rt.settings.api_annotator.allowed_hosts),
                             run_id=run_id)
    ack = await rt.bus.publish(event)
    return SubmitResult(filename=filename, doc_id=spec_id, size_bytes=size, kind="spec",
                        outcome="duplicate" if getattr(ack, "duplicate", False) else "submitted",
                        detail=f"{loaded.title}: {len(loaded.tools)} operations")


async def submit_path(rt: Runtime, path: Path, *, collection: str,
                      run_id: str | None = None) -> SubmitResult:
    with open(path, "rb") as fh:
        return await submit_file(rt, fh, filename=path.name, collection=collection,
                                 run_id=run_id)
