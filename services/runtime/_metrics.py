"""The project's own Prometheus metrics (FastStream's middleware adds the bus metrics).

All metrics live in the process-wide default registry, labelled by service, so the
embedded mode (every service in one process) and a pod (one service) expose the same names.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

__all__ = [
    "CHUNKS",
    "DEAD_LETTERS",
    "DOCUMENTS",
    "HANDLER_FAILURES",
    "HANDLER_SECONDS",
    "INGEST_BYTES",
    "PARSE_SECONDS",
    "READY",
    "RECORDS",
    "REGISTRY",
    "TEACHER_CACHE",
    "TEACHER_CALLS",
    "TEACHER_SECONDS",
    "TEACHER_TOKENS",
    "handler_totals",
    "handler_delta",
]

HANDLER_SECONDS = Histogram(
    "syllabus_handler_seconds", "Time spent handling one message", ["service", "subject"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
HANDLER_FAILURES = Counter(
    "syllabus_handler_failures_total", "Handler exceptions (each is retried or dead-lettered)",
    ["service", "subject", "error"],
)
DEAD_LETTERS = Counter(
    "syllabus_dead_letters_total", "Messages sent to syllabus.dlq.<service>", ["service", "cause"],
)
DOCUMENTS = Counter(
    "syllabus_documents_total", "Documents ingested or rejected", ["outcome", "reason"],
)
CHUNKS = Counter(
    "syllabus_chunks_total", "Chunks announced or dropped", ["outcome", "reason"],
)
INGEST_BYTES = Counter("syllabus_ingest_bytes_total", "Bytes of documents parsed")
PARSE_SECONDS = Histogram(
    "syllabus_parse_seconds", "Time to parse one document", ["media_type"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
READY = Gauge("syllabus_ready", "1 when the broker and the store are reachable", ["service"])
TEACHER_CALLS = Counter(
    "syllabus_teacher_calls_total", "Teacher calls by outcome (cache hits not included)",
    ["kind", "model", "outcome"],
)
TEACHER_SECONDS = Histogram(
    "syllabus_teacher_seconds", "Latency of successful teacher calls", ["kind", "model"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
TEACHER_TOKENS = Counter(
    "syllabus_teacher_tokens_total", "Tokens the teacher read and wrote",
    ["kind", "model", "direction"],
)
TEACHER_CACHE = Counter(
    "syllabus_teacher_cache_hits_total", "Teacher calls answered from the cache", ["kind", "model"],
)
RECORDS = Counter(
    "syllabus_records_total", "Records by stage and outcome", ["stage", "outcome", "reason"],
)


def handler_totals() -> dict[str, tuple[float, float]]:
    """Per service: (messages handled, handler seconds) so far in this process, from
    ``HANDLER_SECONDS`` (its ``_count`` and ``_sum`` over every subject)."""
    out: dict[str, list[float]] = {}
    for metric in HANDLER_SECONDS.collect():
        for sample in metric.samples:
            kind = ("count" if sample.name.endswith("_count")
                    else "sum" if sample.name.endswith("_sum") else None)
            if kind is None:
                continue
            slot = out.setdefault(sample.labels["service"], [0.0, 0.0])
            slot[0 if kind == "count" else 1] += sample.value
    return {k: (v[0], v[1]) for k, v in out.items()}


def handler_delta(before: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """What each service handled since ``before`` (``handler_totals``): ``messages`` and
    ``handler_seconds`` (summed over the messages it handled at once, so it can exceed the
    wall time), services with no message left out."""
    out = {}
    for service, (count, seconds) in sorted(handler_totals().items()):
        c0, s0 = before.get(service, (0.0, 0.0))
        if count - c0 > 0:
            out[service] = {"messages": int(count - c0),
                            "handler_seconds": round(seconds - s0, 3)}
    return out
