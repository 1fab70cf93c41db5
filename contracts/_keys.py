"""Artifact-store keys (DESIGN.md's table). Every key is content-addressed."""

from __future__ import annotations

__all__ = ["chunk_key", "document_key", "spec_key", "teacher_cache_key", "tool_eval_key",
           "tool_filter_key"]


def document_key(doc_id: str) -> str:
    return f"documents/{doc_id}"


def chunk_key(chunk_id: str) -> str:
    return f"chunks/{chunk_id}.json"


def teacher_cache_key(digest: str) -> str:
    return f"cache/teacher/{digest}.json"


def spec_key(spec_id: str) -> str:
    """An OpenAPI spec's bytes, under their sha256."""
    return f"specs/{spec_id}"


def tool_filter_key(spec_id: str) -> str:
    """API filtering's verdicts on a spec's operations, with their reasons."""
    return f"tools/{spec_id}/filter.json"


def tool_eval_key(spec_id: str) -> str:
    """The api-annotator's evaluation of a spec's searches (pass rate per group, method)."""
    return f"tools/{spec_id}/eval.json"
