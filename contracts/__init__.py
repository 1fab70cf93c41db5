"""Syllabus contracts: what travels on the bus, and what a plugin implements.

This package depends on pydantic and pluggy only, so a plugin author's package never
pulls in NATS, torch or Triton.
"""

from . import _hookspecs as hookspecs
from ._answers import normalize_answer, token_f1
from ._hookspecs import HOOK_KINDS, PROJECT, hookimpl, hookspec
from ._ids import (
    COLLECTION_PATTERN,
    RUN_ID_PATTERN,
    canonical_json,
    check_collection,
    check_run_id,
    content_id,
    is_valid_collection,
    is_valid_run_id,
    normalise_text,
    sha256_hex,
)
from ._inference import (
    HUMPBACK_AUGMENTED_SYSTEM,
    HUMPBACK_SEED_SYSTEM,
    PREDICT_PREFIX,
    inference_prefix,
    inference_system,
)
from ._keys import (
    chunk_key,
    document_key,
    spec_key,
    teacher_cache_key,
    tool_eval_key,
    tool_filter_key,
)
from ._language import (
    LANGUAGE_NAMES,
    language_name,
    output_language,
    prompt_language,
    unsupported,
)
from ._messages import *  # noqa: F403
from ._messages import __all__ as _messages_all
from ._parsing import *  # noqa: F403
from ._parsing import __all__ as _parsing_all
from ._process import parent_death_signal, stop_process
from ._protocols import *  # noqa: F403
from ._protocols import __all__ as _protocols_all
from ._subjects import *  # noqa: F403
from ._subjects import __all__ as _subjects_all
from ._tasks import *  # noqa: F403
from ._tasks import __all__ as _tasks_all
from ._tools import *  # noqa: F403
from ._tools import __all__ as _tools_all

__all__ = [
    "COLLECTION_PATTERN",
    "HOOK_KINDS",
    "HUMPBACK_AUGMENTED_SYSTEM",
    "HUMPBACK_SEED_SYSTEM",
    "LANGUAGE_NAMES",
    "PREDICT_PREFIX",
    "PROJECT",
    "RUN_ID_PATTERN",
    "canonical_json",
    "check_collection",
    "check_run_id",
    "chunk_key",
    "document_key",
    "content_id",
    "hookimpl",
    "hookspec",
    "hookspecs",
    "inference_prefix",
    "inference_system",
    "is_valid_collection",
    "is_valid_run_id",
    "language_name",
    "normalise_text",
    "normalize_answer",
    "output_language",
    "parent_death_signal",
    "prompt_language",
    "sha256_hex",
    "spec_key",
    "stop_process",
    "teacher_cache_key",
    "token_f1",
    "unsupported",
    "tool_eval_key",
    "tool_filter_key",
    *_messages_all,
    *_parsing_all,
    *_protocols_all,
    *_subjects_all,
    *_tasks_all,
    *_tools_all,
]
