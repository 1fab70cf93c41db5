"""The Triton Python-backend model the server writes as ``<model>/<version>/model.py``.

This file is copied verbatim into every Triton model repository, so it imports nothing
from Syllabus: only Triton's ``triton_python_backend_utils`` (which exists inside the
Python-backend stub), numpy, torch and transformers. Triton imports it as ``model.py``;
nothing in Syllabus imports it.

The model is **decoupled** (``model_transaction_policy { decoupled: true }``): each
request is generated on a worker thread, and its text is sent back as it is produced.
Its inputs follow the conventions of Triton's vLLM backend, so the same client speaks to
either backend:

``text_input`` (BYTES ``[1]``)
    The prompt (the caller renders a chat with the tokenizer's chat template).
``stream`` (BOOL ``[1]``, optional)
    True: one response per piece of new text, then a last, empty response that carries
    ``finish_reason`` and the token counts with the FINAL flag. False (the default): one
    response with the whole text and the FINAL flag, which is what Triton's HTTP
    ``generate`` endpoint needs.
``sampling_parameters`` (BYTES ``[1]``, optional)
    A JSON object: ``max_tokens``, ``temperature`` (0 = greedy), ``top_p``, ``stop`` (a
    string or a list of strings; the text is cut before the first one), ``seed``,
    ``ignore_eos`` (as vLLM: generate ``max_tokens`` even past the end token). The
    same keys are also read from the request's parameters (what ``generate``'s body
    passes on), the input winning on a clash.
``exclude_input_in_output`` (BOOL ``[1]``, optional)
    Accepted for compatibility; the prompt is never echoed.

Outputs: ``text_output`` (BYTES ``[1]``, the new piece of text), ``finish_reason`` (BYTES
``[1]``: ``stop`` or ``length``; empty until the last response), ``num_input_tokens`` and
``num_output_tokens`` (INT32 ``[1]``).

The weights are a Hugging Face model directory: ``model_path`` in the model's
``parameters`` when set (absolute, or relative to this model's folder in the repository),
else ``<version>/hf`` next to this file. ``max_tokens_limit`` (default 1024), ``threads``
(torch threads, default: torch's choice) and ``max_concurrent`` (requests generated at
once, default 4), ``dtype`` (a torch dtype name) and ``max_prompt_tokens`` (the longest
prompt, 0 = only the model's ``max_position_embeddings`` bounds prompt plus
``max_tokens``) are read from the same parameters. An
instance of kind GPU runs on its GPU, in bfloat16 by default; a CPU one in float32. A request that has been cancelled
(the client went away) stops generating within 50 ms.
"""

# ruff: noqa: N802 - Triton calls these names

from __future__ import annotations

import inspect
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:  # inside Triton's Python-backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - read outside Triton
    pb_utils = None

_DEFAULT_MAX_TOKENS = 64


def _param(config: dict, name: str, default: str | None = None) -> str | None:
    value = (config.get("parameters") or {}).get(name, {}).get("string_value")
    return value if value not in (None, "") else default


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = json.loads(args["model_config"])
        here = args["model_repository"]
        path = _param(self.config, "model_path") or os.path.join(args["model_version"], "hf")
        self.model_path = path if os.path.isabs(path) else os.path.join(here, path)
        if not os.path.isdir(self.model_path):
            raise pb_utils.TritonModelException(
                f"no model directory at {self.model_path} (set the model_path parameter)")
        threads = _param(self.config, "threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.max_tokens_limit = int(_param(self.config, "max_tokens_limit", "1024"))
        self.torch = torch
        # an instance of kind GPU runs on its device (bfloat16 unless the dtype parameter
        # says otherwise); a CPU instance in float32
        gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args.get('model_instance_device_id', 0)}"
                                   if gpu else "cpu")
        dtype = getattr(torch, _param(self.config, "dtype", "bfloat16" if gpu else "float32"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
        self.model.to(self.device)
        self.model.eval()
        # a model whose weights are all NaN (or zeros from a broken conversion) would answer
        # garbage: one forward pass here makes a broken model fail to load instead
        with torch.no_grad():
            probe = self.tokenizer("ok", return_tensors="pt").to(self.device)
            logits = self.model(**probe).logits
        if not bool(torch.isfinite(logits).all()):
            raise pb_utils.TritonModelException(
                f"the model at {self.model_path} produces non-finite logits")
        self.eos_ids = self._eos_ids()
        # transformers 5.x renamed past_key_values to cache (in and out)
        params = inspect.signature(self.model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        # the longest prompt plus max_tokens the model takes (its position embeddings), and
        # the server's own prompt limit (the max_prompt_tokens parameter, 0 = none)
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.max_prompt_tokens = int(_param(self.config, "max_prompt_tokens", "0"))
        self.closing = False
        self.pool = ThreadPoolExecutor(max_workers=int(_param(self.config, "max_concurrent", "4")),
                                       thread_name_prefix="generate")

    def finalize(self) -> None:
        # requests still queued get an error response with the FINAL flag (cancelling
        # their futures would leave their callers waiting for a final response that never
        # comes); running ones stop at their next token with the same error
        self.closing = True
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown(wait=True)

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config,
                       self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    # --- requests --------------------------------------------------------------------------

    def execute(self, requests: list) -> None:
        for request in requests:
            sender = request.get_response_sender()
            try:
                job = self._parse(request)
            except Exception as exc:  # noqa: BLE001 - the caller gets the message
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            self.pool.submit(self._run, request, sender, job)
        return None

    def _parse(self, request) -> dict:
        def value(name: str):
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                return None
            array = tensor.as_numpy().reshape(-1)
            return array[0] if array.size else None

        prompt = value("text_input")
        if prompt is None:
            raise ValueError("the text_input input is required")
        prompt = prompt.decode("utf-8") if isinstance(prompt, bytes) else str(prompt)
        params: dict = dict(json.loads(request.parameters() or "{}"))
        sampling = value("sampling_parameters")
        if sampling is not None:
            text = sampling.decode("utf-8") if isinstance(sampling, bytes) else str(sampling)
            try:
                extra = json.loads(text or "{}")
            except ValueError as exc:
                raise ValueError(f"sampling_parameters is not a JSON object: {exc}") from exc
            if not isinstance(extra, dict):
                raise ValueError("sampling_parameters must be a JSON object")
            params.update(extra)
        stream = value("stream")
        max_tokens = int(params.get("max_tokens") or _DEFAULT_MAX_TOKENS)
        if not 1 <= max_tokens <= self.max_tokens_limit:
            raise ValueError(f"max_tokens must be between 1 and {self.max_tokens_limit}, "
                             f"got {max_tokens}")
        stop = params.get("stop") or []
        if isinstance(stop, str):
            try:  # request parameters carry a list as its JSON text
                stop = json.loads(stop) if stop.startswith("[") else [stop]
            except ValueError:
                stop = [stop]
        temperature = float(params.get("temperature") or 0.0)
        top_p = float(params.get("top_p") or 1.0)
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        seed = params.get("seed")
        ignore_eos = params.get("ignore_eos") or False
        if isinstance(ignore_eos, str):
            ignore_eos = ignore_eos.lower() in ("1", "true", "yes")
        return {"ignore_eos": bool(ignore_eos), "prompt": prompt, "stream": bool(stream) if stream is not None else False,
                "max_tokens": max_tokens, "stop": [str(s) for s in stop if s],
                "temperature": temperature, "top_p": top_p,
                "seed": int(seed) if seed is not None else None}

    def _response(self, text: str, finish: str, n_in: int, n_out: int):
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("finish_reason", np.array([finish.encode()], dtype=np.object_)),
            pb_utils.Tensor("num_input_tokens", np.array([n_in], dtype=np.int32)),
            pb_utils.Tensor("num_output_tokens", np.array([n_out], dtype=np.int32)),
        ])

    def _run(self, request, sender, job: dict) -> None:
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            if self.closing:
                raise RuntimeError("the model is being unloaded")
            text, finish, n_in, n_out = "", "length", 0, 0
            for step in self._generate(request, job):
                piece, finish, n_in, n_out = step
                if job["stream"] and piece:
                    sender.send(self._response(piece, "", n_in, n_out))
                text += piece
            sender.send(self._response("" if job["stream"] else text, finish, n_in, n_out),
                        flags=final)
        except Exception as exc:  # noqa: BLE001 - the caller gets the message
            sender.send(pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")), flags=final)

    def _generate(self, request, job: dict):
        """Yields ``(new_text, finish_reason, input_tokens, output_tokens)`` per token."""
        torch = self.torch
        ids = self.tokenizer(job["prompt"], return_tensors="pt",
                             add_special_tokens=False)["input_ids"].to(self.device)
        n_in = int(ids.shape[1])
        # the server checks this before it sends a request; this guards the backend against
        # other callers (a prompt past the position embeddings would fail or exhaust memory)
        if self.max_prompt_tokens and n_in > self.max_prompt_tokens:
            raise ValueError(f"the prompt has {n_in} tokens; the limit is "
                             f"{self.max_prompt_tokens}")
        if self.max_positions and n_in + job["max_tokens"] > self.max_positions:
            raise ValueError(f"the prompt ({n_in} tokens) plus max_tokens "
                             f"({job['max_tokens']}) exceeds the model's context of "
                             f"{self.max_positions} tokens")
        generator = None
        if job["temperature"] > 0:
            generator = torch.Generator(device=self.device).manual_seed(
                job["seed"] if job["seed"] is not None else int.from_bytes(os.urandom(4), "little"))
        produced: list[int] = []
        sent = ""  # the text already sent (the decoded text is re-decoded whole each step,
        # so multi-byte characters split across tokens come out right)
        hold = max((len(s) for s in job["stop"]), default=1) - 1
        past, step_ids = None, ids
        checked = time.monotonic()
        with torch.no_grad():
            for _ in range(job["max_tokens"]):
                # asking Triton whether the client went away is a round trip to the server
                # process: at most every 50 ms
                if time.monotonic() - checked > 0.05:
                    checked = time.monotonic()
                    if _cancelled(request):
                        return
                    if self.closing:
                        raise RuntimeError("the model is being unloaded")
                out = self.model(input_ids=step_ids, use_cache=True, **{self.cache_arg: past})
                past = getattr(out, self.cache_arg)
                logits = out.logits[0, -1].float()
                token = _pick(torch, logits, job["temperature"], job["top_p"], generator)
                if token in self.eos_ids and not job["ignore_eos"]:
                    yield self._rest(produced, sent), "stop", n_in, len(produced)
                    return
                produced.append(token)
                step_ids = torch.tensor([[token]], device=self.device)
                text = self.tokenizer.decode(produced, skip_special_tokens=True)
                cut = _first_stop(text, job["stop"])
                if cut is not None:
                    yield text[len(sent):cut] if cut > len(sent) else "", "stop", n_in, \
                        len(produced)
                    return
                # keep back what could be the start of a stop string, and a trailing
                # replacement character (half of a multi-byte character)
                safe = len(text) - hold if job["stop"] else len(text)
                if text.endswith("\ufffd"):
                    safe = min(safe, len(text) - 1)
                if safe > len(sent):
                    piece, sent = text[len(sent):safe], text[:safe]
                    yield piece, "length", n_in, len(produced)
        yield self._rest(produced, sent), "length", n_in, len(produced)

    def _rest(self, produced: list[int], sent: str) -> str:
        """What of the decoded text has not been sent yet."""
        text = self.tokenizer.decode(produced, skip_special_tokens=True) if produced else ""
        return text[len(sent):] if text.startswith(sent) else ""


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _pick(torch, logits, temperature: float, top_p: float, generator) -> int:
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


def _cancelled(request) -> bool:
    check = getattr(request, "is_cancelled", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:  # noqa: BLE001 - older stubs
        return False


