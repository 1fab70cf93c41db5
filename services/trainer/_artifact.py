"""The model artifact in the store: ``models/<model_id>/``.

A plain Hugging Face model folder, loadable with ``from_pretrained`` once downloaded:

* ``config.json``, ``model.safetensors``, ``generation_config.json``, the tokenizer files
  with the chat template (always the full model; LoRA weights are merged in);
* ``adapter/`` (``adapter_config.json``, ``adapter_model.safetensors``) when LoRA is kept;
* ``README.md``: the model card, naming the base model, the data set version and its
  manifest (key and sha256), the method, the hyper-parameters and the metrics;
* ``dataset_manifest.json``: a copy of the data set version's manifest;
* ``training.json``: the job record (request, metrics, loss history, each rank's share),
  written last: a model folder with it is complete.

``models/<model_id>/checkpoints/`` holds the checkpoints (see ``_checkpoint``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ._checkpoint import upload_folder

__all__ = ["RECORD_FILE", "model_card", "model_prefix", "upload_model"]

RECORD_FILE = "training.json"


def model_prefix(model_id: str) -> str:
    return f"models/{model_id}/"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def model_card(*, model_id: str, record: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The README.md: YAML front matter for hubs, then what the model is and how it was made."""
    hp = record["hyperparameters"]
    metrics = record.get("metrics", {})
    counts = manifest.get("counts", {})
    sources = manifest.get("sources", {})
    docs = sources.get("documents", {})
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        f"base_model: {json.dumps(record['base_model'])}",
        "tags: [syllabus, fine-tuned" + (", lora" if record["method"] == "lora" else "") + "]",
        f"datasets: [{json.dumps(record['dataset'])}]",
        "---",
        "",
        f"# {model_id}",
        "",
        f"Fine-tuned by the Syllabus trainer from `{record['base_model']}` on the data set "
        f"version `{record['dataset']}` ({manifest.get('format', '?')} format), "
        f"method `{record['method']}`" + (
            f" (LoRA r={hp['lora_r']}, alpha={hp['lora_alpha']}, merged"
            + (", adapter kept in adapter/" if hp.get("lora_adapter") == "keep" else "") + ")"
            if record["method"] == "lora" else "") + ".",
        "",
        "## Data set",
        "",
        f"- version: `{record['dataset']}`",
        f"- manifest: `{record['manifest_key']}` (sha256 `{record['manifest_sha256']}`), "
        f"copied to `dataset_manifest.json`",
        f"- rows: {counts.get('train_rows', '?')} train, {counts.get('eval_rows', '?')} eval; "
        f"records selected: {counts.get('selected', '?')} of {counts.get('accepted', '?')} "
        f"accepted, {counts.get('synthetic', 0)} synthetic",
        f"- source documents: {len(docs)}"
        + (" (" + ", ".join(sorted({d.get('filename', '?') for d in docs.values()})[:10]) + ")"
           if docs else ""),
        f"- teachers: {', '.join(sources.get('teachers', {})) or '?'}",
        "",
        "## Training",
        "",
        f"- job: `{record['job_id']}`; processes: {record.get('world_size', '?')} "
        f"({record.get('backend', '?')}), strategy {hp['strategy']}",
        "- loss on the answer tokens only" + (
            f"; step-by-step multi-task loss alpha * L(predict) + (1 - alpha) * L(explain), "
            f"alpha = {hp['alpha']} (Hsieh et al. 2023)" if record.get("multitask") else ""),
        "- hyper-parameters: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(hp.items())
                                            if v is not None),
        "",
        "## Results",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in sorted(metrics.items())],
        "",
        "Training loss by step: " + ", ".join(f"{s}: {_fmt(v)}"
                                              for s, v in record.get("history", [])[:50]),
        "",
    ]
    return "\n".join(lines)


def upload_model(store, final_dir: Path, model_id: str, *, card: str,
                 manifest_bytes: bytes, record: dict[str, Any]) -> list[str]:
    """Put the final model, card, manifest copy and (last) the job record to the store."""
    prefix = model_prefix(model_id)
    keys = upload_folder(store, final_dir, prefix)
    store.put(prefix + "README.md", card.encode("utf-8"), content_type="text/markdown")
    store.put(prefix + "dataset_manifest.json", manifest_bytes,
              content_type="application/json")
    record = {**record, "files": sorted([k[len(prefix):] for k in keys]
                                        + ["README.md", "dataset_manifest.json"])}
    store.put(prefix + RECORD_FILE, json.dumps(record, indent=2, default=str).encode("utf-8"),
              content_type="application/json")
    return keys
