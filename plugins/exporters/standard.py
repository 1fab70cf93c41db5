"""``standard`` exporter: the data set formats fine-tuning tools read.

* ``openai``: OpenAI chat JSONL, ``{"messages": [system?, user, assistant], "metadata": ...}``;
* ``alpaca``: ``{"instruction", "input", "output", "metadata"}`` (plus ``system`` when tagged);
* ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}], "metadata"}``;
* ``step-by-step``: the multi-task pairs of Hsieh et al. 2023: ``predict: <input>`` ->
  answer for every record and ``explain: <input>`` -> rationale for records that have one.
  As in the paper, both tasks see the same input, and here the input is the question
  *and its source chunk* (``<question>\n\ncontext: <chunk text>``): the rationale was
  written from the chunk and quotes it, so a model asked to explain from the question
  alone would be taught to make the quotes up. The caller passes the chunks' texts
  (``contexts``, chunk id -> text; the data set builder reads them from the store); a
  record whose chunk is not given gets the question alone (the data set option
  ``closed_book = true`` gives none: the rationale then teaches recall, not reading).

Every row carries its lineage in ``metadata``: the record and chunk ids, the document,
pages, section and language (the chunk's), the technique, the teacher and model, the scores and the decisions.

Tool-call trajectories (``kind == "tool"``, from the api-annotator) export as:

* ``openai``: ``{"messages": [system, user, assistant with tool_calls, tool, ...],
  "tools": [...], "metadata"}``, ending with the assistant's ``Finish`` call (its
  ``final_answer`` is what the user sees; the ``Finish`` observation is left out);
* ``sharegpt``: ``{"conversations": [system?, human, function_call, observation, ...,
  gpt], "tools": "<JSON of the functions>", "metadata"}``, the ShareGPT function-calling
  form (LLaMA-Factory): ``function_call`` values are ``{"name", "arguments"}`` JSON, and the
  final ``gpt`` turn is the final answer;
* ``alpaca`` and ``step-by-step``: the instruction and the final answer only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import IO, Any

from syllabus.contracts import QARecord, hookimpl

__all__ = ["StandardExporter", "lineage_metadata", "register_exporters", "takes_context"]


def lineage_metadata(r: QARecord) -> dict[str, Any]:
    lin = r.lineage
    return {
        "record_id": r.record_id,
        "collection": r.collection,
        "kind": r.kind,
        "chunk_id": r.chunk_id,
        "doc_id": lin.doc_id if lin else None,
        "filename": lin.filename if lin else None,
        "pages": lin.pages if lin else [],
        "section": lin.section if lin else [],
        "language": lin.language if lin else None,
        "technique": f"{r.technique.name}@{r.technique.version}",
        "teacher": f"{r.teacher.kind}:{r.teacher.model}",
        "prompt_hash": r.prompt_hash,
        "scores": r.scores,
        "decisions": [d.model_dump(exclude={"details"}) for d in r.decisions],
    }


def takes_context(record: QARecord) -> bool:
    """Whether the record's step-by-step input carries its chunk: not a tool trajectory
    (it has none), nor an anti-sycophancy claim, which is to be judged from what the model
    knows (Wei et al.), not read off its source."""
    return record.kind not in ("tool", "anti_sycophancy")


class StandardExporter:
    name = "standard"
    formats = ("openai", "alpaca", "sharegpt", "step-by-step")

    def rows(self, record: QARecord, fmt: str, *, context: str | None = None
             ) -> list[dict[str, Any]]:
        """The rows of one record; ``context`` (its chunk's text) for ``step-by-step``."""
        meta = lineage_metadata(record)
        if record.kind == "tool" and record.messages and fmt in ("openai", "sharegpt"):
            return [_tool_row(record, fmt, meta)]
        if fmt == "openai":
            messages = [{"role": "system", "content": record.system}] if record.system else []
            messages += [{"role": "user", "content": record.instruction},
                         {"role": "assistant", "content": record.response}]
            return [{"messages": messages, "metadata": meta}]
        if fmt == "alpaca":
            row: dict[str, Any] = {"instruction": record.instruction, "input": "",
                                   "output": record.response}
            if record.system:
                row["system"] = record.system
            return [{**row, "metadata": meta}]
        if fmt == "sharegpt":
            conv = [{"from": "system", "value": record.system}] if record.system else []
            conv += [{"from": "human", "value": record.instruction},
                     {"from": "gpt", "value": record.response}]
            return [{"conversations": conv, "metadata": meta}]
        if fmt == "step-by-step":
            task_input = record.instruction
            if context and context.strip():
                task_input = f"{record.instruction}\n\ncontext: {context.strip()}"
            out = [{"task": "predict", "input": f"predict: {task_input}",
                    "output": record.response, "metadata": meta}]
            if record.rationale:
                out.append({"task": "explain", "input": f"explain: {task_input}",
                            "output": record.rationale, "metadata": meta})
            return out
        raise ValueError(f"unknown format {fmt!r}; this exporter writes "
                         f"{', '.join(self.formats)}")

    def export(self, records: Iterable[QARecord], *, fmt: str, out: IO[bytes],
               contexts: Mapping[str, str] | None = None) -> int:
        if fmt not in self.formats:
            raise ValueError(f"unknown format {fmt!r}; this exporter writes "
                             f"{', '.join(self.formats)}")
        n = 0
        for record in records:
            context = (contexts.get(record.chunk_id)
                       if contexts and record.chunk_id and takes_context(record) else None)
            for row in self.rows(record, fmt, context=context):
                out.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
                n += 1
        return n


def _openai_tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trajectory up to the assistant's last call (the Finish observation dropped)."""
    out = [dict(m) for m in messages]
    while out and out[-1].get("role") == "tool":
        out.pop()
    return out


def _tool_row(record: QARecord, fmt: str, meta: dict[str, Any]) -> dict[str, Any]:
    messages = record.messages or []
    tools = record.tools or []
    if fmt == "openai":
        return {"messages": _openai_tool_messages(messages), "tools": tools, "metadata": meta}
    conv: list[dict[str, str]] = []
    for m in messages:
        role = m.get("role")
        content = m.get("content") or ""
        if role == "system":
            conv.append({"from": "system", "value": content})
        elif role == "user":
            conv.append({"from": "human", "value": content})
        elif role == "assistant":
            for c in m.get("tool_calls") or ():
                fn = c.get("function") or {}
                if fn.get("name") == "Finish":
                    conv.append({"from": "gpt", "value": record.response})
                    continue
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    args = fn.get("arguments")
                conv.append({"from": "function_call", "value": json.dumps(
                    {"name": fn.get("name"), "arguments": args}, ensure_ascii=False)})
        elif role == "tool" and conv and conv[-1]["from"] == "function_call":
            conv.append({"from": "observation", "value": content})
    if not conv or conv[-1]["from"] != "gpt":
        conv.append({"from": "gpt", "value": record.response})
    # the final answer is a gpt turn here, so Finish is not one of the functions
    functions = [f for f in (t.get("function", t) for t in tools) if f.get("name") != "Finish"]
    return {"conversations": conv, "tools": json.dumps(functions, ensure_ascii=False),
            "metadata": meta}


@hookimpl
def register_exporters(register):
    register(StandardExporter())
