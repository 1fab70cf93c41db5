"""The sycophancy-filter service: keeps the best records, and says why for every one.

Consumes ``syllabus.qa.rationalized`` (durable consumer ``sycophancy-filter``), runs the
configured filter plugins in order (``filters.techniques``: ``heuristic-quality``,
``sycophancy-detector``, ``llm-judge`` by default) with the record's source chunk as
context, records every decision (filter, score, reason), and publishes the record on
``syllabus.records.accepted`` or ``syllabus.records.rejected``.
"""

from ._service import SERVICE, build_router

__all__ = ["SERVICE", "build_router"]
