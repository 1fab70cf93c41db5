"""The ``transformers`` teacher: a causal language model from a local directory, run
in-process with Hugging Face transformers.

Meant for small or fine-tuned models on the machine that makes the data (a GPU box, or a
CPU for tiny models and tests). For throughput with a big model, serve it with vLLM or
TGI and use the ``openai`` teacher: this one runs one ``generate`` at a time.

Models are never downloaded. ``model`` must be a directory already on disk (a
``save_pretrained`` output, a ``huggingface-cli download --local-dir`` copy, a checkpoint
of the trainer); every load passes ``local_files_only=True`` and ``trust_remote_code`` is
never set, so the model's own code is never run.

Options (the recipe's ``[teacher]`` table; keys not listed are left to the runtime):

``model`` (required)
    The model directory (with ``config.json``, the weights and the tokenizer). A value
    that is not a directory fails at once, naming the path; one that looks like a Hub id
    (``meta-llama/Llama-3-8B``) says that models are never downloaded.
``device`` (default ``auto``)
    ``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``; or name one: ``cpu``,
    ``cuda``, ``cuda:1``, ``mps``.
``dtype`` (default ``auto``)
    ``auto`` is bfloat16 on a GPU that supports it, else float32; or ``float32``,
    ``bfloat16``, ``float16`` (``fp32``, ``bf16``, ``fp16`` too).
``name``
    The model name recorded in records and in the runtime's cache keys; the default is
    the directory's absolute path. Give a new name when the directory gets new weights,
    or the runtime's response cache answers with the old model's replies.
``seed``
    When set, every sampled call (``temperature > 0``) starts from ``torch.manual_seed(
    seed)``, so the same prompt gets the same reply. Greedy calls need no seed.

How a call runs: the tokenizer and model load on the first call (or ``await
teacher.load()``), in a worker thread, so the event loop is never blocked. The prompt is
the tokenizer's chat template with the generation prompt added; a template that rejects
the ``system`` role gets the system text prepended to the first user message; a tokenizer
with no template gets ``role: content`` lines and ``assistant:``. ``GenerationParams``
map to ``max_new_tokens=max_tokens``, ``do_sample=temperature > 0``, ``temperature`` and
``top_p``; what they leave out comes from the model's ``generation_config.json``.
Generation stops at the model's EOS tokens, at ``max_tokens``, or as soon as a ``stop``
string appears; the reply is cut before the first stop string. ``json_schema``, ``task``
and ``inputs`` are not used (nothing constrains decoding; the prompt asks for JSON).
Calls are serialised: one model, one ``generate`` at a time. A call that is cancelled
(the runtime's time-out) stops its ``generate`` at the next token; a load that is under
way goes on, and the runtime's retry finds the model loaded (so a big model's first call
may time out once: ``await teacher.load()`` first avoids that).
``Completion.prompt_tokens`` and ``completion_tokens`` are the real token counts.

Errors: running out of GPU memory while generating is ``TeacherError(retryable=True)``
(the cache is emptied first). A directory that does not load (no weights, no tokenizer, a
corrupt file), a device torch cannot use, or a model too big for the device is
``TeacherError(retryable=False)`` naming the path; any other failure in ``generate`` is
``TeacherError(retryable=False)``.

torch and transformers are imported on the first call, never when this module is
imported, so listing plugins stays fast. ``aclose()`` drops the model and frees its
memory; the next call loads it again.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import gc
import os
import re
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syllabus.contracts import (
    ChatMessage,
    Completion,
    GenerationParams,
    TeacherError,
    hookimpl,
)

from ._common import choice_error, cut_at_stop, required_model, snippet

__all__ = ["DTYPES", "TransformersTeacher", "TransformersTeacherFactory", "register_teachers"]

KIND = "transformers"
#: accepted ``dtype`` values -> torch dtype names (``auto`` is decided at load)
DTYPES: dict[str, str] = {
    "auto": "auto",
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}
_DEVICE = re.compile(r"^[a-z]+(:\d+)?$")
# owner/name, as the Hub spells ids: not a path that starts with / . or ~
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _model_dir(value: Any) -> Path:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    raw = required_model("transformers teacher", value,
                         'a local model directory, e.g. model = "/models/Qwen2.5-0.5B-Instruct"')
    path = Path(os.path.abspath(Path(raw).expanduser()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"transformers teacher: {str(path)!r} is not a transformers model "
                             f"directory (it has no config.json)")
        return path
    if path.exists():
        raise ValueError(f"transformers teacher: model {str(path)!r} is a file; it must be a "
                         f"model directory")
    if _HUB_ID.match(raw):
        raise ValueError(
            f"transformers teacher: model {raw!r} is not a local directory (looked for "
            f"{str(path)!r}). It looks like a Hugging Face Hub id, but models are never "
            f"downloaded: fetch it yourself (huggingface-cli download {raw} --local-dir DIR) "
            f"and set model = DIR")
    raise ValueError(f"transformers teacher: model directory {str(path)!r} does not exist")


def _device_option(value: Any) -> str:
    device = str(value if value is not None else "auto").strip().lower() or "auto"
    if not _DEVICE.match(device):
        raise ValueError(f"transformers teacher: device must be auto, cpu, cuda, cuda:N or "
                         f"another torch device name; got {value!r}")
    return device


def _dtype_option(value: Any) -> str:
    dtype = str(value if value is not None else "auto").strip().lower() or "auto"
    dtype = dtype.removeprefix("torch.")
    if dtype not in DTYPES:
        raise choice_error("transformers teacher", "dtype", DTYPES, value)
    return DTYPES[dtype]


def _seed_option(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        seed = int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"transformers teacher: seed must be an integer, got {value!r}") from exc
    if isinstance(value, float) and value != seed or seed < 0:
        raise ValueError(f"transformers teacher: seed must be a non-negative integer, "
                         f"got {value!r}")
    return seed


@dataclass
class _Loaded:
    torch: Any
    tokenizer: Any
    model: Any
    device: str
    dtype: str


class TransformersTeacher:
    """One local model, loaded on first use. Close with ``await teacher.aclose()`` or
    ``async with teacher``."""

    kind = KIND

    def __init__(self, *, model: str | os.PathLike[str], device: str = "auto",
                 dtype: str = "auto", name: str | None = None, seed: int | None = None) -> None:
        self.path = _model_dir(model)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError("transformers teacher: name must be a non-empty string")
        self.model = name.strip() if name else str(self.path)
        self.device = _device_option(device)
        self.dtype = _dtype_option(dtype)
        self.seed = _seed_option(seed)
        self._loaded: _Loaded | None = None
        self._load_error: TeacherError | None = None
        # the thread lock makes one generate at a time, whichever loop or thread calls;
        # the per-loop asyncio lock keeps waiting callers off the worker threads
        self._busy = threading.Lock()
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = \
            weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        loaded = self._loaded
        device, dtype = (loaded.device, loaded.dtype) if loaded else (self.device, self.dtype)
        return (f"TransformersTeacher(model={self.model!r}, device={device!r}, "
                f"dtype={dtype!r}, loaded={loaded is not None})")

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    # --- loading ---------------------------------------------------------------------

    async def load(self) -> None:
        """Load the tokenizer and model now (a call does it anyway); ``TeacherError`` if
        they do not load."""
        async with self._lock():
            await asyncio.to_thread(self._load_locked)

    def _load_locked(self) -> _Loaded:
        with self._busy:
            return self._ensure_loaded()

    def _ensure_loaded(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        if self._load_error is not None:
            raise TeacherError(str(self._load_error), retryable=False)
        try:
            self._loaded = self._load()
        except TeacherError as exc:
            if not getattr(exc, "out_of_memory", False):
                self._load_error = exc  # the same directory fails the same way next time
            raise
        return self._loaded

    def _load(self) -> _Loaded:
        import torch
        import transformers

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise self._error(f"device {device!r} was asked for, but torch sees no CUDA GPU "
                              f"(torch {torch.__version__})", retryable=False)
        dtype = self.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() \
                else "float32"
        dtype_kwarg = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.path, local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                self.path, local_files_only=True, device_map={"": device},
                **{dtype_kwarg: getattr(torch, dtype)})
        except Exception as exc:
            if _is_oom(torch, exc):
                _free_memory(torch)
                error = self._error(f"the model in {str(self.path)!r} does not fit on {device} "
                                    f"as {dtype}: {snippet(exc)}", retryable=False)
                error.out_of_memory = True  # type: ignore[attr-defined]
                raise error from exc
            raise self._error(f"cannot load the model in {str(self.path)!r}: "
                              f"{type(exc).__name__}: {snippet(exc)}", retryable=False) from exc
        model.eval()
        return _Loaded(torch=torch, tokenizer=tokenizer, model=model, device=device,
                       dtype=dtype)

    async def aclose(self) -> None:
        """Drop the model and free its memory; the next call loads it again."""
        async with self._lock():
            await asyncio.to_thread(self._unload)

    def _unload(self) -> None:
        with self._busy:
            loaded, self._loaded, self._load_error = self._loaded, None, None
        if loaded is not None:
            torch = loaded.torch
            del loaded
            gc.collect()
            _free_memory(torch)

    async def __aenter__(self) -> TransformersTeacher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- one call --------------------------------------------------------------------

    async def complete(self, messages: Sequence[ChatMessage], *,
                       params: GenerationParams) -> Completion:
        if params.max_tokens < 1:
            raise self._error(f"max_tokens must be at least 1, got {params.max_tokens}",
                              retryable=False)
        started = time.perf_counter()
        cancel = threading.Event()
        async with self._lock():
            try:
                text, prompt_tokens, completion_tokens = await asyncio.to_thread(
                    self._complete_locked, list(messages), params, cancel)
            except asyncio.CancelledError:
                cancel.set()  # the worker thread stops generating at its next token
                raise
        return Completion(text=text, model=self.model, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens,
                          latency_seconds=time.perf_counter() - started)

    def _complete_locked(self, messages: list[ChatMessage], params: GenerationParams,
                         cancel: threading.Event) -> tuple[str, int, int]:
        with self._busy:
            loaded = self._ensure_loaded()
            if cancel.is_set():
                return "", 0, 0
            prompt = self._prompt_ids(loaded.tokenizer, messages)
            new_ids = self._generate(loaded, prompt, params, cancel)
            text = loaded.tokenizer.decode(new_ids, skip_special_tokens=True)
            return cut_at_stop(text, params.stop), len(prompt), len(new_ids)

    def _prompt_ids(self, tokenizer: Any, messages: list[ChatMessage]) -> list[int]:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        if not getattr(tokenizer, "chat_template", None):
            text = "".join(f"{m['role']}: {m['content']}\n" for m in chat) + "assistant:"
            return list(tokenizer(text)["input_ids"])
        try:
            return _apply_template(tokenizer, chat)
        except Exception as exc:
            folded = _fold_system(chat)
            if folded is not None:  # e.g. Gemma's "System role not supported"
                try:
                    return _apply_template(tokenizer, folded)
                except Exception:
                    pass
            raise self._error(f"the chat template failed: {type(exc).__name__}: "
                              f"{snippet(exc)}", retryable=False) from exc

    def _generate(self, loaded: _Loaded, prompt: list[int], params: GenerationParams,
                  cancel: threading.Event) -> list[int]:
        torch, tokenizer, model = loaded.torch, loaded.tokenizer, loaded.model
        config = copy.deepcopy(model.generation_config)
        sampling = params.temperature > 0
        if sampling:
            config.update(do_sample=True, temperature=params.temperature)
            if params.top_p is not None:
                config.update(top_p=params.top_p)
        else:  # greedy: the model's sampling defaults would only draw warnings
            config.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        config.update(max_new_tokens=params.max_tokens)
        if config.pad_token_id is None:
            pad = tokenizer.pad_token_id
            if pad is None:
                eos = config.eos_token_id
                pad = eos[0] if isinstance(eos, list) and eos else eos
            config.update(pad_token_id=pad)
        stops = [s for s in params.stop or () if s]
        criteria = _stop_criteria_class()(tokenizer, len(prompt), stops, cancel)
        from transformers import StoppingCriteriaList

        try:
            with torch.inference_mode():
                input_ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
                if sampling and self.seed is not None:
                    torch.manual_seed(self.seed)
                output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                        generation_config=config,
                                        stopping_criteria=StoppingCriteriaList([criteria]))
            return output[0, len(prompt):].tolist()
        except Exception as exc:
            if _is_oom(torch, exc):
                _free_memory(torch)
                raise self._error(f"out of memory on {loaded.device} while generating "
                                  f"({len(prompt)} prompt tokens, max_tokens "
                                  f"{params.max_tokens}): {snippet(exc)}",
                                  retryable=True) from exc
            raise self._error(f"generate failed: {type(exc).__name__}: {snippet(exc)}",
                              retryable=False) from exc

    def _error(self, detail: str, *, retryable: bool) -> TeacherError:
        return TeacherError(f"transformers teacher {self.model!r}: {detail}",
                            retryable=retryable)


def _apply_template(tokenizer: Any, chat: list[dict[str, str]]) -> list[int]:
    encoded = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)
    return list(encoded["input_ids"])


def _fold_system(chat: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """The chat with its system messages prepended to the first user message (or made a
    user message); ``None`` when it has none."""
    system = [m["content"] for m in chat if m["role"] == "system"]
    if not system:
        return None
    rest = [dict(m) for m in chat if m["role"] != "system"]
    prefix = "\n\n".join(system)
    for message in rest:
        if message["role"] == "user":
            message["content"] = f"{prefix}\n\n{message['content']}"
            return rest
    return [{"role": "user", "content": prefix}, *rest]


@functools.cache
def _stop_criteria_class() -> type:
    import torch
    from transformers import StoppingCriteria

    class StopOnTextOrCancel(StoppingCriteria):
        """Stops when the generated text contains a stop string, or the call was
        cancelled. (Batch of one: the teacher generates one reply at a time.)"""

        def __init__(self, tokenizer: Any, prompt_len: int, stops: list[str],
                     cancel: threading.Event) -> None:
            self.tokenizer = tokenizer
            self.prompt_len = prompt_len
            self.stops = stops
            self.cancel = cancel

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = self.cancel.is_set()
            if not done and self.stops:
                text = self.tokenizer.decode(input_ids[0, self.prompt_len:].tolist(),
                                             skip_special_tokens=True)
                done = any(stop in text for stop in self.stops)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool,
                              device=input_ids.device)

    return StopOnTextOrCancel


def _is_oom(torch: Any, exc: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom_type) or (isinstance(exc, RuntimeError)
                                         and "out of memory" in str(exc).lower())


def _free_memory(torch: Any) -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


class TransformersTeacherFactory:
    """Makes ``TransformersTeacher`` objects from the recipe's ``[teacher]`` options."""

    kind = KIND

    def create(self, options: dict[str, Any]) -> TransformersTeacher:
        options = dict(options or {})
        name = options.get("name")
        return TransformersTeacher(
            model=options.get("model"),  # type: ignore[arg-type]  # checked there
            device=options.get("device") or "auto",
            dtype=options.get("dtype") or "auto",
            name=str(name) if name not in (None, "") else None,
            seed=options.get("seed"),
        )

    def __repr__(self) -> str:
        return "TransformersTeacherFactory()"


@hookimpl
def register_teachers(register: Any) -> None:
    register(TransformersTeacherFactory())

