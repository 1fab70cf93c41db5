"""The Triton model repository the server writes for a trained model.

Layout (Triton's, rooted at ``triton/`` in the store, DESIGN.md's key, and at the local
model-repository folder when Triton reads one)::

    <name>/config.pbtxt
    <name>/<version>/model.py      the Python backend's generator (``_backend_model.py``)
    <name>/<version>/hf/...        the Hugging Face model directory (weights, tokenizer)

or, with ``backend = "vllm"`` (GPU clusters), ``<name>/<version>/model.json`` (the vLLM
engine arguments) in place of ``model.py``. The repository is self-contained: a Triton
that reads it from S3 copies the model's folder and finds the weights inside.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BACKEND_MODEL_SOURCE", "RepositoryFiles", "config_pbtxt", "repository_files",
           "triton_name"]

BACKEND_MODEL_SOURCE = Path(__file__).with_name("_backend_model.py")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
#: files of a Hugging Face model directory the repository copies (LoRA adapter folders and
#: training leftovers stay behind)
_HF_FILES = re.compile(
    r"^(config\.json|generation_config\.json|.*\.safetensors|model\.safetensors\.index\.json"
    r"|pytorch_model.*\.bin(\.index\.json)?|tokenizer.*|special_tokens_map\.json"
    r"|chat_template\.jinja|vocab\.json|merges\.txt|.*\.model|README\.md"
    r"|dataset_manifest\.json)$")


_MAX_NAME = 128


def triton_name(model_id: str) -> str:
    """A Triton model name for ``model_id`` (letters, digits, ``_ . -``, at most 128).

    A model id that is already such a name is used as it is. One that had to be changed
    (other characters replaced by ``-``) or cut gets ``-`` and 8 hex digits of its SHA-256
    appended, so two ids never share a name (``org/m`` and ``org-m`` would otherwise
    both be ``org-m``, and the second deployment would replace the first). Raises
    ``ValueError`` for an id with no usable character."""
    name = _NAME.sub("-", model_id).strip("-.")
    if not name:
        raise ValueError(f"model id {model_id!r} has no usable characters for a Triton name")
    if name == model_id and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return f"{name[:_MAX_NAME - 9].rstrip('-.')}-{digest}"


def is_model_file(relative: str) -> bool:
    """Whether a file of the trained model's directory belongs in the repository."""
    return "/" not in relative and bool(_HF_FILES.match(relative))


def _input(name: str, dtype: str, optional: bool) -> str:
    opt = "\n    optional: true" if optional else ""
    return f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ 1 ]{opt}\n  }}'


def _output(name: str, dtype: str) -> str:
    return f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ 1 ]\n  }}'


def _parameters(values: dict[str, str]) -> str:
    return "".join(f'parameters: {{\n  key: "{k}"\n  value: {{ string_value: "{v}" }}\n}}\n'
                   for k, v in values.items() if v not in (None, ""))


def config_pbtxt(name: str, *, backend: str = "python", instances: int = 1,
                 parameters: dict[str, str] | None = None, kind: str = "cpu",
                 version: int | None = None) -> str:
    """``config.pbtxt`` for a decoupled text-generation model (inputs as the vLLM backend
    names them: ``text_input``, ``stream``, ``sampling_parameters``,
    ``exclude_input_in_output``). ``version`` pins the version Triton serves."""
    policy = (f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}\n"
              if version is not None else "")
    if backend == "vllm":
        # the vLLM backend declares its own inputs and outputs (auto-complete)
        return (f'name: "{name}"\nbackend: "vllm"\n{policy}'
                f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_MODEL\n  }}\n]\n"
                + _parameters(parameters or {}))
    if backend != "python":
        raise ValueError(f"backend must be 'python' or 'vllm', got {backend!r}")
    inputs = ",\n".join([_input("text_input", "TYPE_STRING", False),
                         _input("stream", "TYPE_BOOL", True),
                         _input("sampling_parameters", "TYPE_STRING", True),
                         _input("exclude_input_in_output", "TYPE_BOOL", True)])
    outputs = ",\n".join([_output("text_output", "TYPE_STRING"),
                          _output("finish_reason", "TYPE_STRING"),
                          _output("num_input_tokens", "TYPE_INT32"),
                          _output("num_output_tokens", "TYPE_INT32")])
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n{policy}'
            f"model_transaction_policy {{\n  decoupled: true\n}}\n"
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_{kind.upper()}\n"
            f"  }}\n]\n" + _parameters(parameters or {}))


@dataclass(frozen=True)
class RepositoryFiles:
    """What to write: ``(path inside the repository, bytes or a source key)``."""

    name: str
    version: int
    #: small generated files: relative path -> content
    generated: dict[str, bytes]
    #: the model's files: relative path in the repository -> the file's name in the
    #: trained model's directory
    weights: dict[str, str]

    def paths(self) -> Iterator[str]:
        yield from self.generated
        yield from self.weights


def repository_files(name: str, model_files: list[str], *, version: int = 1,
                     backend: str = "python", parameters: dict[str, str] | None = None,
                     vllm_model_path: str | None = None, instances: int = 1,
                     execution_env: str | None = None, kind: str = "cpu") -> RepositoryFiles:
    """The files of ``name``'s repository for a trained model with ``model_files`` (names
    relative to its directory). Raises ``ValueError`` when the model lacks a file every
    model needs (``config.json``, weights, a tokenizer)."""
    present = set(model_files)
    missing = [f for f in ("config.json",) if f not in present]
    if not any(f.endswith(".safetensors") or f.endswith(".bin") for f in present):
        missing.append("model.safetensors (no weights)")
    if not any(f.startswith("tokenizer") for f in present):
        missing.append("tokenizer.json / tokenizer_config.json")
    if missing:
        raise ValueError(f"the model directory lacks {', '.join(missing)}")
    params = dict(parameters or {})
    if execution_env:
        params["EXECUTION_ENV_PATH"] = execution_env
    generated: dict[str, bytes] = {}
    if backend == "vllm":
        # AsyncEngineArgs fields only (the backend passes them on as keyword arguments):
        # no disable_log_requests, which newer vLLM removed (it logs no requests by
        # default since enable_log_requests replaced it)
        engine = {"model": vllm_model_path or f"{version}/hf",
                  "gpu_memory_utilization": 0.85, "enforce_eager": False}
        generated[f"{version}/model.json"] = (json.dumps(engine, indent=2) + "\n").encode()
    else:
        generated[f"{version}/model.py"] = BACKEND_MODEL_SOURCE.read_bytes()
    generated["config.pbtxt"] = config_pbtxt(name, backend=backend, instances=instances,
                                             parameters=params, kind=kind,
                                             version=version).encode()
    weights = {f"{version}/hf/{f}": f for f in sorted(present) if is_model_file(f)}
    return RepositoryFiles(name=name, version=version, generated=generated, weights=weights)
