"""The ingest service: documents (PDF, HTML, Markdown, text, Word, PowerPoint) -> clean, de-duplicated chunks.

Consumes ``syllabus.documents.submitted`` (durable consumer ``ingest``), publishes
``syllabus.chunks.created`` / ``syllabus.chunks.dropped`` and ``syllabus.documents.ingested`` /
``syllabus.documents.rejected``. Offers ``POST /v1/documents`` for uploads.
"""

from ._documents import Rejection, check_filename, detect_parser
from ._http import http_routes
from ._service import SERVICE, build_router
from ._submit import SubmitResult, iter_files, submit_file, submit_path

__all__ = [
    "SERVICE",
    "Rejection",
    "SubmitResult",
    "build_router",
    "check_filename",
    "detect_parser",
    "http_routes",
    "iter_files",
    "submit_file",
    "submit_path",
]
