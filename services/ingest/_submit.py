"""Submitting documents: the bytes go to the store under their hash (claim check), and a
``DocumentSubmitted`` carrying the key goes on the bus. Used by ``syllabus ingest``,
``syllabus run`` and ``POST /v1/documents``. A file refused here (an unsafe name, empty,
over the size limit) is published as ``DocumentRejected`` so the run report shows it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from syllabus.contracts import DocumentSubmitted, RejectionReason, document_key

from ..runtime import Runtime
from ._documents import Rejection, check_filename, hash_stream
from ._service import reject

__all__ = ["SubmitResult", "document_key", "iter_files", "submit_file", "submit_path"]


@dataclass
class SubmitResult:
    filename: str
    doc_id: str
    outcome: Literal["submitted", "duplicate", "rejected"]
    size_bytes: int = 0
    reason: str | None = None
    detail: str | None = None


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


async def submit_file(rt: Runtime, fh: IO[bytes], *, filename: str, collection: str,
                      run_id: str | None = None, media_type: str | None = None) -> SubmitResult:
    """Store ``fh`` (read in blocks) and announce it. ``fh`` must be seekable."""
    doc_id, size = await rt.to_thread(hash_stream, fh)
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


async def submit_path(rt: Runtime, path: Path, *, collection: str,
                      run_id: str | None = None) -> SubmitResult:
    with open(path, "rb") as fh:
        return await submit_file(rt, fh, filename=path.name, collection=collection,
                                 run_id=run_id)
