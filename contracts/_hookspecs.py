"""The plugin hook specs (register-callback style, after simonw/llm).

A plugin module implements any of these with ``@hookimpl`` and calls ``register(obj)``
once per object; each object satisfies the Protocol of its kind. A plugin package lists
its module under the ``syllabus`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["HOOK_KINDS", "PROJECT", "hookimpl", "hookspec"]

PROJECT = "syllabus"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[Any], None]


@hookspec
def register_parsers(register: Register) -> None:
    """Register ``Parser`` objects (one per media type family)."""


@hookspec
def register_chunkers(register: Register) -> None:
    """Register ``Chunker`` objects."""


@hookspec
def register_question_generators(register: Register) -> None:
    """Register ``QuestionGenerator`` objects."""


@hookspec
def register_rationale_generators(register: Register) -> None:
    """Register ``RationaleGenerator`` objects."""


@hookspec
def register_filters(register: Register) -> None:
    """Register ``Filter`` objects."""


@hookspec
def register_augmenters(register: Register) -> None:
    """Register ``Augmenter`` objects."""


@hookspec
def register_tool_annotators(register: Register) -> None:
    """Register ``ToolAnnotator`` objects."""


@hookspec
def register_teachers(register: Register) -> None:
    """Register ``TeacherFactory`` objects (one per teacher kind)."""


@hookspec
def register_exporters(register: Register) -> None:
    """Register ``Exporter`` objects."""


#: hook name -> the Protocol its registered objects satisfy (by name, see __init__)
HOOK_KINDS: dict[str, str] = {
    "register_parsers": "Parser",
    "register_chunkers": "Chunker",
    "register_question_generators": "QuestionGenerator",
    "register_rationale_generators": "RationaleGenerator",
    "register_filters": "Filter",
    "register_augmenters": "Augmenter",
    "register_tool_annotators": "ToolAnnotator",
    "register_teachers": "TeacherFactory",
    "register_exporters": "Exporter",
}
