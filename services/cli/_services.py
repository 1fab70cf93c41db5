"""The services this build knows, by name. Each package exposes ``build_router(rt)`` and,
optionally, ``http_routes(rt)``. Services never import each other; only the CLI sees all."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["OPT_IN", "SERVICES", "load_service"]

SERVICES: dict[str, str] = {
    "ingest": "syllabus.services.ingest",
    "question-gen": "syllabus.services.question_gen",
    "rationale": "syllabus.services.rationale",
    "sycophancy-filter": "syllabus.services.sycophancy_filter",
    "api-annotator": "syllabus.services.api_annotator",
    "dataset-builder": "syllabus.services.datasets",
    "trainer": "syllabus.services.trainer",
    "server": "syllabus.services.server",
}

#: services ``syllabus run`` mounts only when its flag asks for them (the server starts
#: Triton and loads models: heavy, and needs a trained model)
OPT_IN: dict[str, str] = {"server": "--serve", "trainer": "--train"}


def load_service(name: str) -> ModuleType:
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(sorted(SERVICES))}")
    return importlib.import_module(SERVICES[name])
