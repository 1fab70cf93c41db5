"""The server service: trained models behind NVIDIA Triton and an OpenAI-compatible API.

Consumes ``syllabus.training.completed`` (durable consumer ``server``). For each trained
model it writes a Triton model repository (``config.pbtxt`` and a decoupled Python-backend
``model.py`` that generates with transformers, or a vLLM-backend ``model.json``) to the
store at ``triton/<model>/...`` and to the local repository folder Triton reads, loads it
through ``tritonclient``'s model-control API (explicit mode), checks that it is ready,
runs the evaluation gate (held-out QA, sycophancy) and publishes ``ModelDeployed`` on
``syllabus.models.deployed``, with ``status`` deployed, refused or failed.

With no ``server.triton_url`` it starts the ``tritonserver`` that the ``nvidia-pytriton``
wheel carries, on the CPU (``EmbeddedTriton``). ``http_routes`` are the OpenAI API:
``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``.
"""

from ._api import ApiError, api_routes, openai_error
from ._deploy import RECORD_FILE, ServerState, record_key, server_state
from ._gate import GateResult, ServedTeacher, generate, run_gate
from ._repository import (
    BACKEND_MODEL_SOURCE,
    RepositoryFiles,
    config_pbtxt,
    repository_files,
    triton_name,
)
from ._service import (
    HEADER_REDEPLOY,
    SERVICE,
    build_router,
    http_routes,
    ready,
    shutdown,
    startup,
)
from ._triton import EmbeddedTriton, GenerateChunk, TritonClient, TritonError, find_tritonserver

__all__ = [
    "BACKEND_MODEL_SOURCE",
    "HEADER_REDEPLOY",
    "RECORD_FILE",
    "SERVICE",
    "ApiError",
    "EmbeddedTriton",
    "GateResult",
    "GenerateChunk",
    "RepositoryFiles",
    "ServedTeacher",
    "ServerState",
    "TritonClient",
    "TritonError",
    "api_routes",
    "build_router",
    "config_pbtxt",
    "find_tritonserver",
    "generate",
    "http_routes",
    "openai_error",
    "ready",
    "record_key",
    "repository_files",
    "run_gate",
    "server_state",
    "shutdown",
    "startup",
    "triton_name",
]
