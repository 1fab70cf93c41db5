"""Data set rows -> token ids with labels on the answer tokens only.

Rows come in the data set builder's formats (``plugins/exporters/standard.py``), told
apart by their keys:

* OpenAI chat: ``{"messages": [...], "tools"?: [...]}``; assistant ``tool_calls`` and
  ``tool`` observations (tool trajectories) are rendered as text: each call as
  ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` in the assistant's turn, the
  tool schemas in the system turn, observations as a ``tool`` turn;
* Alpaca: ``{"instruction", "input", "output", "system"?}``;
* ShareGPT: ``{"conversations": [{"from": "system"|"human"|"gpt"|..., "value"}]}``, with
  function calling (``function_call`` turns rendered as ``<tool_call>...</tool_call>``,
  ``observation`` turns as ``tool`` turns, ``tools`` a JSON string);
* step-by-step (Hsieh et al. 2023, "Distilling step-by-step"): ``{"task": "predict" |
  "explain", "input", "output"}``. The ``predict:`` and ``explain:`` rows of one record
  (``metadata.record_id``) form one training sample, so every batch holds both tasks of its
  records and the loss is the paper's ``alpha * L(predict) + (1 - alpha) * L(explain)``.

Every assistant turn is a target (its content and the end-of-turn token); everything else
gets the label ``-100``:

* a chat template that marks assistant turns with ``{% generation %}`` gives the mask
  directly (``return_assistant_tokens_mask``);
* any other chat template is rendered turn by turn: the tokens between the prompt up to an
  assistant turn (with the generation prompt) and the conversation including that turn are
  the answer (the template must render a conversation as a prefix of its continuation);
* a tokenizer without a chat template gets a plain template (``PLAIN_TEMPLATE``), with the
  answer followed by the EOS token.

A sequence longer than ``max_seq_len`` loses prompt tokens from the left first (after the
BOS), then the end of its answer; a row left without an answer token is skipped and
counted (``EncodedData.skipped``), never dropped silently.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "IGNORE_INDEX",
    "PLAIN_TEMPLATE",
    "answer_counts",
    "TASKS",
    "DataError",
    "EncodedData",
    "Example",
    "TokenSequence",
    "collate",
    "combine",
    "encode_examples",
    "encode_messages",
    "load_examples",
    "plain_chat_template",
    "read_rows",
    "row_to_example",
    "step_loss",
    "token_losses",
    "multitask_loss",
]

IGNORE_INDEX = -100
#: task ids in a batch: 0 = plain SFT or "predict", 1 = "explain"
TASKS = {"sft": 0, "predict": 0, "explain": 1}
#: the template for tokenizers without a chat template (answers end with the EOS token)
PLAIN_TEMPLATE = {
    "system": "### System:\n{content}\n\n",
    "user": "### Instruction:\n{content}\n\n",
    "tool": "### Tool result:\n{content}\n\n",
    "assistant_prompt": "### Response:\n",
    "assistant_end": "\n\n",
}
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "function_call": "assistant",
                   "observation": "tool", "tool": "tool", "function": "tool"}
_GENERATION = re.compile(r"{%-?\s*generation\s*-?%}")


class DataError(ValueError):
    """A row that is not in a known format; the message names the file and line."""


@dataclass
class Example:
    messages: list[dict[str, str]]
    task: str = "sft"
    group: str | None = None
    where: str = ""


@dataclass
class TokenSequence:
    input_ids: list[int]
    labels: list[int]
    task: int


@dataclass
class EncodedData:
    #: training samples: one sequence, or a record's predict and explain sequences
    samples: list[list[TokenSequence]]
    multitask: bool
    skipped: list[str] = field(default_factory=list)
    truncated: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(s.input_ids) for sample in self.samples for s in sample)


# --- rows -> messages ------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return str(value)


def _tool_call_text(call: dict[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    if isinstance(args, str):
        with contextlib.suppress(ValueError):
            args = json.loads(args)
    return "<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": args},
                                      ensure_ascii=False) + "</tool_call>"


def _tools_text(tools: Sequence[dict[str, Any]] | str, where: str) -> str:
    if isinstance(tools, str):  # ShareGPT function calling carries them as a JSON string
        try:
            tools = json.loads(tools)
        except ValueError as exc:
            raise DataError(f"{where}: 'tools' is not valid JSON ({exc})") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise DataError(f"{where}: 'tools' must be a list of function schemas")
    lines = [json.dumps(t.get("function", t), ensure_ascii=False, sort_keys=True) for t in tools]
    return ("You can call these tools; write each call as <tool_call>{\"name\": ..., "
            "\"arguments\": {...}}</tool_call>:\n" + "\n".join(lines))


def _chat(messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | str | None,
          where: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise DataError(f"{where}: message {i} has no role")
        role = m["role"]
        if role == "function":
            role = "tool"
        if role not in ("system", "user", "assistant", "tool"):
            raise DataError(f"{where}: message {i} has the unknown role {role!r}")
        content = _text(m.get("content"))
        if role == "assistant" and m.get("tool_calls"):
            calls = "\n".join(_tool_call_text(c) for c in m["tool_calls"])
            content = f"{content}\n{calls}" if content else calls
        if role == "tool" and m.get("name"):
            content = f"[{m['name']}] {content}"
        out.append({"role": role, "content": content})
    if tools:
        schema = _tools_text(tools, where)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + schema}
        else:
            out.insert(0, {"role": "system", "content": schema})
    return out


def row_to_example(row: Any, where: str = "row") -> Example:
    """One data set row as chat messages, its task and its record (for step-by-step).
    Anything wrong with the row, whatever its shape, is a ``DataError`` naming ``where``."""
    try:
        return _row_to_example(row, where)
    except DataError:
        raise
    except Exception as exc:  # a shape the checks below did not foresee: still the row's fault
        raise DataError(f"{where}: malformed row ({type(exc).__name__}: {exc})") from None


def _list_of_dicts(value: Any, name: str, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise DataError(f"{where}: {name!r} must be a list, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise DataError(f"{where}: {name}[{i}] must be an object, got "
                            f"{type(item).__name__}")
    return value


def _row_to_example(row: Any, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    group = meta.get("record_id")
    if group is not None:
        group = str(group)
    if "messages" in row:
        msgs = _chat(_list_of_dicts(row["messages"], "messages", where), row.get("tools"), where)
        ex = Example(msgs, "sft", group, where)
    elif "conversations" in row:
        msgs = []
        for i, turn in enumerate(_list_of_dicts(row["conversations"], "conversations", where)):
            role = _SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
            if role is None:
                raise DataError(f"{where}: conversation turn {i} has the unknown speaker "
                                f"{turn.get('from')!r}")
            value = _text(turn.get("value"))
            if str(turn.get("from", "")).lower() == "function_call":  # {"name", "arguments"}
                value = f"<tool_call>{value}</tool_call>"
            msgs.append({"role": role, "content": value})
        ex = Example(_chat(msgs, row.get("tools"), where), "sft", group, where)
    elif "task" in row and "input" in row and "output" in row:
        task = row["task"]
        if task not in ("predict", "explain"):
            raise DataError(f"{where}: step-by-step task must be 'predict' or 'explain', "
                            f"got {task!r}")
        ex = Example([{"role": "user", "content": _text(row["input"])},
                      {"role": "assistant", "content": _text(row["output"])}], task, group,
                     where)
    elif "instruction" in row and "output" in row:
        prompt = _text(row["instruction"])
        if _text(row.get("input")).strip():
            prompt += "\n\n" + _text(row["input"])
        msgs = [{"role": "system", "content": _text(row["system"])}] if row.get("system") else []
        msgs += [{"role": "user", "content": prompt},
                 {"role": "assistant", "content": _text(row["output"])}]
        ex = Example(msgs, "sft", group, where)
    else:
        raise DataError(f"{where}: not a data set row in a known format (expected 'messages', "
                        f"'conversations', 'instruction'+'output' or 'task'+'input'+'output'; "
                        f"got keys {sorted(row)})")
    if not any(m["role"] == "assistant" for m in ex.messages):
        raise DataError(f"{where}: the row has no assistant turn to train on")
    return ex


def read_rows(path: Path | str) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for every non-blank line of a JSONL file, ``where`` being
    ``<file>:<line>``; a line that is not UTF-8 or not JSON raises ``DataError``."""
    path = Path(path)
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            where = f"{path.name}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not UTF-8 text ({exc})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{where}: not valid JSON ({exc})") from None
            yield where, row


def load_examples(path: Path | str) -> list[Example]:
    """Every row of a JSONL file; a bad line raises ``DataError`` naming the file and line."""
    return [row_to_example(row, where) for where, row in read_rows(path)]


def plain_chat_template() -> str:
    """``PLAIN_TEMPLATE`` as a Jinja chat template, saved with a model whose tokenizer had
    none, so that the model is served with the prompt format it was trained on. It renders
    what ``_plain`` encodes (BOS, the turns, each answer followed by EOS), with the
    answers in ``{% generation %}`` blocks and ``### Response:`` as the generation prompt."""

    def literal(text: str) -> str:
        return "{{ " + json.dumps(text) + " }}"

    def turn(role: str) -> str:
        before, after = PLAIN_TEMPLATE[role].split("{content}")
        return literal(before) + "{{ message['content'] }}" + literal(after)

    return (
        "{% if bos_token %}{{ bos_token }}{% endif %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}"
        + literal(PLAIN_TEMPLATE["assistant_prompt"])
        + "{% generation %}{{ message['content'] }}{% if eos_token %}{{ eos_token }}{% endif %}"
          "{% endgeneration %}"
        + literal(PLAIN_TEMPLATE["assistant_end"])
        + "{% elif message['role'] == 'system' %}" + turn("system")
        + "{% elif message['role'] == 'tool' %}" + turn("tool")
        + "{% else %}" + turn("user")
        + "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}" + literal(PLAIN_TEMPLATE["assistant_prompt"])
        + "{% endif %}")


# --- messages -> ids and labels --------------------------------------------------------


def _plain(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, target: bool) -> None:
        part = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        ids.extend(part)
        labels.extend(part if target else [IGNORE_INDEX] * len(part))

    if tokenizer.bos_token_id is not None:
        ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE_INDEX)
    for m in messages:
        if m["role"] == "assistant":
            add(PLAIN_TEMPLATE["assistant_prompt"], False)
            add(m["content"], True)
            if tokenizer.eos_token_id is not None:
                ids.append(tokenizer.eos_token_id)
                labels.append(tokenizer.eos_token_id)
            add(PLAIN_TEMPLATE["assistant_end"], False)
        else:
            add(PLAIN_TEMPLATE[m["role"]].format(content=m["content"]), False)
    return ids, labels


def _render(tokenizer, messages, **kw) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kw)


def _incremental(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    full = _render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1])
        if not (upto.startswith(prefix) and full.startswith(upto)):
            raise DataError("the tokenizer's chat template does not render a conversation as "
                            "a prefix of its continuation, so the answer tokens cannot be "
                            "found; add {% generation %} markers to the template")
        # the turn ends at its end-of-turn token; the separator after it is not a target
        spans.append((len(prefix), len(upto.rstrip())))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [tok if any(a <= s < b for a, b in spans) else IGNORE_INDEX
              for tok, (s, _e) in zip(ids, enc["offset_mapping"], strict=True)]
    return ids, labels


def encode_messages(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids and labels (the token id on answer tokens, ``-100`` elsewhere)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return _plain(tokenizer, messages)
    if isinstance(template, str) and _GENERATION.search(template):
        enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids = list(enc["input_ids"])
        mask = enc["assistant_masks"]
        return ids, [t if k else IGNORE_INDEX for t, k in zip(ids, mask, strict=True)]
    return _incremental(tokenizer, messages)


def _truncate(ids: list[int], labels: list[int], n: int) -> tuple[list[int], list[int]]:
    """Cut a sequence to ``n`` tokens, keeping the answer: prompt tokens go first, from
    the left (after the first token, the BOS), then the answer's end."""
    first = next((i for i, lab in enumerate(labels) if lab != IGNORE_INDEX), len(ids))
    drop = min(len(ids) - n, max(first - 2, 0))  # keep token 0 and the one before the answer
    if drop > 0:
        ids, labels = ids[:1] + ids[1 + drop:], labels[:1] + labels[1 + drop:]
    return ids[:n], labels[:n]


def encode_examples(tokenizer, examples: Iterable[Example], *, max_seq_len: int,
                    multitask: bool | None = None) -> EncodedData:
    """Tokenise ``examples``; with step-by-step rows, group a record's predict and explain
    rows into one sample."""
    examples = list(examples)
    if multitask is None:
        # eq. 3 needs both tasks: with predict rows only (a step-by-step data set whose
        # records have no rationale) it would be 0.5 * L(predict), so train as plain SFT
        multitask = any(e.task == "explain" for e in examples)
    samples: list[list[TokenSequence]] = []
    by_group: dict[str, list[TokenSequence]] = {}
    skipped: list[str] = []
    truncated = 0
    for ex in examples:
        ids, labels = encode_messages(tokenizer, ex.messages)
        if len(ids) > max_seq_len:
            ids, labels = _truncate(ids, labels, max_seq_len)
            truncated += 1
        # the first token is never predicted, so a target there does not count
        if not any(lab != IGNORE_INDEX for lab in labels[1:]):
            skipped.append(f"{ex.where}: no answer token within max_seq_len={max_seq_len}")
            continue
        seq = TokenSequence(ids, labels, TASKS[ex.task])
        if multitask and ex.group:
            if ex.group not in by_group:
                by_group[ex.group] = []
                samples.append(by_group[ex.group])
            by_group[ex.group].append(seq)
        else:
            samples.append([seq])
    for sample in samples:  # predict first, then explain, whatever the row order
        sample.sort(key=lambda s: s.task)
    return EncodedData(samples=samples, multitask=multitask, skipped=skipped,
                       truncated=truncated)


def collate(samples: Sequence[Sequence[TokenSequence]], pad_id: int):
    """Right-padded tensors: input_ids, attention_mask, labels, task (one per sequence)."""
    import torch

    seqs = [s for sample in samples for s in sample]
    width = max(len(s.input_ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s.input_ids)
        ids[i, :n] = torch.tensor(s.input_ids)
        labels[i, :n] = torch.tensor(s.labels)
        mask[i, :n] = 1
    task = torch.tensor([s.task for s in seqs], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "task": task}


# --- the loss --------------------------------------------------------------------------


def token_losses(logits, labels):
    """Next-token cross-entropy per position (float32), and the mask of answer positions."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    ce = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                         shift_labels.reshape(-1), ignore_index=IGNORE_INDEX,
                         reduction="none").view(shift_labels.shape)
    return ce, shift_labels != IGNORE_INDEX


def answer_mask(labels):
    """``(batch, seq)`` booleans: the positions whose *next* token is an answer token, the
    only logits the loss needs (passed as ``logits_to_keep``)."""
    import torch

    kept = torch.zeros_like(labels, dtype=torch.bool)
    kept[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return kept


def multitask_loss(logits, labels, task, *, alpha: float, multitask: bool, kept=None):
    """The batch loss and its parts.

    Plain SFT: the mean cross-entropy over the batch's answer tokens. Step-by-step
    (Hsieh et al. 2023, eq. 3): ``alpha * L(predict) + (1 - alpha) * L(explain)``, each the
    mean over its own task's answer tokens; a task with no tokens in the batch adds 0.

    Returns ``(loss, sums)`` where ``sums`` holds float tensors ``ce_predict``,
    ``tok_predict``, ``ce_explain``, ``tok_explain`` (sums, for exact averages across
    batches and processes). With ``kept`` (``answer_mask``), ``logits`` holds only the
    marked positions' rows, flattened, as the model returns them for that mask.
    """
    if kept is None:
        ce, answer = token_losses(logits, labels)
        is_explain = (task == TASKS["explain"]).view(-1, 1).expand_as(answer)
        m_p = answer & ~is_explain
        m_e = answer & is_explain
    else:  # logits (n, vocab): the positions ``kept`` marks, in order, all answer positions
        import torch.nn.functional as F

        ce = F.cross_entropy(logits.float(), labels[:, 1:][kept[:, :-1]], reduction="none")
        m_e = (task == TASKS["explain"]).view(-1, 1).expand_as(kept)[kept]
        m_p = ~m_e
    sums = {"ce_predict": (ce * m_p).sum(), "tok_predict": m_p.sum().float(),
            "ce_explain": (ce * m_e).sum(), "tok_explain": m_e.sum().float()}
    if not multitask:
        total = sums["tok_predict"] + sums["tok_explain"]
        loss = (sums["ce_predict"] + sums["ce_explain"]) / total.clamp(min=1.0)
        return loss, sums
    l_p = sums["ce_predict"] / sums["tok_predict"].clamp(min=1.0)
    l_e = sums["ce_explain"] / sums["tok_explain"].clamp(min=1.0)
    return alpha * l_p + (1.0 - alpha) * l_e, sums


def combine(sums: dict[str, float], *, alpha: float, multitask: bool) -> dict[str, float]:
    """Losses from summed parts (an evaluation over many batches)."""
    tp, te = sums["tok_predict"], sums["tok_explain"]
    l_p = sums["ce_predict"] / tp if tp else math.nan
    l_e = sums["ce_explain"] / te if te else math.nan
    if not multitask:
        return {"loss": (sums["ce_predict"] + sums["ce_explain"]) / max(tp + te, 1.0)}
    loss = alpha * (l_p if tp else 0.0) + (1.0 - alpha) * (l_e if te else 0.0)
    return {"loss": loss, "loss_predict": l_p, "loss_explain": l_e}


def step_loss(sums, totals, *, alpha: float, multitask: bool):
    """One micro-batch's share of an optimizer step's loss.

    ``sums`` are the micro-batch's summed cross-entropies (``multitask_loss``'s second
    value); ``totals`` the step's answer-token counts ``[predict, explain]`` over every
    micro-batch of every process (all-reduced before the forward passes). Summed over the
    step's micro-batches and processes this is exactly the loss of the whole step as one
    batch: the mean over all its answer tokens (per task for step-by-step, then
    ``alpha * L(predict) + (1 - alpha) * L(explain)``), the way Hugging Face's Trainer
    divides by ``num_items_in_batch``, not a mean of per-micro-batch means.
    """
    n_p = totals[0].clamp(min=1.0) if hasattr(totals[0], "clamp") else max(totals[0], 1.0)
    n_e = totals[1].clamp(min=1.0) if hasattr(totals[1], "clamp") else max(totals[1], 1.0)
    if not multitask:
        n = totals[0] + totals[1]
        n = n.clamp(min=1.0) if hasattr(n, "clamp") else max(n, 1.0)
        return (sums["ce_predict"] + sums["ce_explain"]) / n
    return alpha * sums["ce_predict"] / n_p + (1.0 - alpha) * sums["ce_explain"] / n_e


def answer_counts(labels, task):
    """Answer tokens (predicted positions) of a collated batch per task:
    ``[predict or plain, explain]`` as a float64 tensor."""
    import torch

    answer = labels[:, 1:] != IGNORE_INDEX
    explain = (task == TASKS["explain"]).view(-1, 1).expand_as(answer)
    return torch.stack([(answer & ~explain).sum(), (answer & explain).sum()]).double()
