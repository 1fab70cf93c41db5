"""The services this build knows, by name. Each package exposes ``build_router(rt)`` and,
optionally, ``http_routes(rt)``. Services never import each other; only the CLI sees all."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["SERVICES", "load_service"]

SERVICES: dict[str, str] = {
    "ingest": "syllabus.services.ingest",
    "question-gen": "syllabus.services.question_gen",
    "rationale": "syllabus.services.rationale",
    "sycophancy-filter": "syllabus.services.sycophancy_filter",
    "dataset-builder": "syllabus.services.datasets",
}


def load_service(name: str) -> ModuleType:
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(sorted(SERVICES))}")
    return importlib.import_module(SERVICES[name])
