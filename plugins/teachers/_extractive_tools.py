"""The ``extractive`` teacher's api-annotator tasks: instructions from API documentation,
and a rule-based function-calling policy (stdlib only).

``tool_instructions`` -- template instruction generation (ToolLLM App. B.1's task, without
a model). Each API's description becomes a request in the imperative ("Returns the hives
of an apiary" -> "Return the hives of an apiary"), and the API's example arguments are
written into it the way the paper asks a model to ("incorporate the input parameters
required for each API call"): ``... for apiary id "north-field"``. I1 gives one query per
API; I2 and I3 join the requests of two APIs of different tools ("... Also, ...") so each
query needs both. ``related_apis`` names the APIs used, as ``[tool, api]`` pairs.

``tool_call`` -- a lexical function-calling policy (a ReAct-style agent whose "thoughts"
are retrieval scores):

1. The query is split into requests: its sentences, and clauses joined by "Also," or
   "then" (the joins ``tool_instructions`` writes, and common in people's requests).
2. Every function (not ``Finish``) is a document: its name split into words, its
   description, its parameter names, descriptions and enum values. Requests are matched to
   functions by TF-IDF cosine similarity over stemmed content words (Salton & Buckley
   1988), the classic lexical retriever that ToolLLM's API retriever is compared with.
3. Arguments are filled from the request: an enum value that occurs in it; a value right
   after the parameter's name ("hive id H-17", "limit: 5", "city=Oslo"); a value from the
   schema's example or default that occurs in it; then quoted strings and numbers in
   order of appearance, for parameters of those types; then the schema's default for a
   required parameter. Nothing is invented.
4. The history (the assistant's calls and the ``tool`` observations in ``messages``) says
   which requests are done: a request is done when one of its calls returned an
   observation without an error. A failed call is not repeated on the same path: the
   request's next-best function (similarity above ``MIN_SCORE``) is tried. Functions named
   in a DFSDT diversity prompt ("previous actions" at this node) are skipped too, so a
   re-expanded node really does something else.
5. When every request is done: ``Finish`` with ``give_answer`` and a final answer that
   quotes each request's observation (shortened). When a request has no function left:
   ``Finish`` with ``give_up_and_restart``.

Observations are read as ToolBench writes them, ``{"error": "...", "response": "..."}``
(an empty ``error`` is a success); any other text counts as a success.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ._extractive_text import STOPWORDS, stem, verb_form

__all__ = ["MIN_SCORE", "tool_call", "tool_instructions"]

FINISH = "Finish"
#: the least TF-IDF cosine similarity for a function to be called for a request
MIN_SCORE = 0.08
#: characters of each observation quoted in a final answer
ANSWER_CHARS = 300

_WORD = re.compile(r"[A-Za-z]+|\d+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT_CLAUSE = re.compile(r"(?:(?<=[.!?])\s+|;\s+|\s+(?:Also|also|And then|and then|Then|"
                           r"then),?\s+)")
_QUOTED = re.compile(r"\"([^\"]+)\"|'([^']+)'|\u201c([^\u201d]+)\u201d")
_NUMBER = re.compile(r"(?<![\w.-])-?\d+(?:\.\d+)?(?![\w-])")
_STEP = re.compile(r"^Step (\d+)/(\d+)\b")
_THIRD_PERSON = {"returns": "return", "lists": "list", "gets": "get", "fetches": "fetch",
                 "creates": "create", "updates": "update", "deletes": "delete",
                 "retrieves": "retrieve", "finds": "find", "searches": "search",
                 "shows": "show", "adds": "add", "removes": "remove", "reads": "read",
                 "counts": "count", "checks": "check", "gives": "give", "provides": "provide",
                 "describes": "describe", "records": "record", "registers": "register",
                 "computes": "compute", "calculates": "calculate", "looks": "look"}
_VERBS = set(_THIRD_PERSON.values()) | {"list", "get", "show", "tell", "give", "find",
                                        "fetch", "search", "check", "look"}
# API verbs the general verb lexicon lacks
_EXTRA_VERBS = {"borrow", "book", "cancel", "schedule", "subscribe", "upload", "download",
                "submit", "lookup", "validate", "translate", "geocode", "ping", "rename"}


# --- words -----------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    text = _CAMEL.sub(" ", text.replace("_", " ").replace("-", " "))
    return [w.lower() for w in _WORD.findall(text)]


def _terms(text: str) -> list[str]:
    return [stem(w) for w in _words(text) if w not in STOPWORDS and len(w) > 1]


def _function_doc(tool: dict[str, Any]) -> str:
    fn = tool.get("function") or {}
    parts = [str(fn.get("name") or ""), str(fn.get("name") or ""),
             str(fn.get("description") or "")]
    props = ((fn.get("parameters") or {}).get("properties") or {})
    for name, schema in props.items():
        parts.append(str(name))
        if isinstance(schema, dict):
            parts.append(str(schema.get("description") or ""))
            parts.extend(str(v) for v in schema.get("enum") or ())
    return " ".join(parts)


class _Index:
    """TF-IDF vectors of the functions, for cosine similarity with a request."""

    def __init__(self, tools: Sequence[dict[str, Any]]) -> None:
        self.tools = [t for t in tools if (t.get("function") or {}).get("name") != FINISH]
        docs = [Counter(_terms(_function_doc(t))) for t in self.tools]
        df: Counter[str] = Counter()
        for d in docs:
            df.update(set(d))
        n = len(docs)
        self.idf = {t: math.log((n + 1) / (c + 1)) + 1.0 for t, c in df.items()}
        self.vectors = [self._weigh(d) for d in docs]

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        vec = {t: (1 + math.log(c)) * self.idf.get(t, 0.0) for t, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {t: v / norm for t, v in vec.items() if v}

    def rank(self, text: str) -> list[tuple[float, dict[str, Any]]]:
        q = self._weigh(Counter(_terms(text)))
        scored = [(sum(w * vec.get(t, 0.0) for t, w in q.items()), i)
                  for i, vec in enumerate(self.vectors)]
        scored.sort(key=lambda x: (-x[0], x[1]))
        return [(round(s, 4), self.tools[i]) for s, i in scored]


# --- instruction generation -----------------------------------------------------------


def _first_sentence(text: str) -> str:
    text = " ".join(str(text or "").split())
    m = re.search(r"(?<=[.!?])\s", text)
    return (text[:m.start()] if m else text).rstrip(".!? ")


def _imperative(description: str, api: str) -> str:
    sentence = _first_sentence(description) or " ".join(_words(api))
    words = sentence.split(" ")
    low = words[0].lower()
    form = verb_form(low)
    if low in _THIRD_PERSON:
        words[0] = _THIRD_PERSON[low].capitalize()
    elif form is not None and form[1] in ("base", "3sg"):
        words[0] = form[0].capitalize()
    elif low in _VERBS or low in _EXTRA_VERBS:
        words[0] = low.capitalize()
    else:
        return f"Get {sentence[0].lower()}{sentence[1:]}"
    return " ".join(words)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False)


def _with_arguments(request: str, arguments: dict[str, Any]) -> str:
    parts = [f"{' '.join(_words(name))} {_value_text(value)}"
             for name, value in arguments.items()
             if name != "body" and isinstance(value, str | int | float | bool)]
    body = arguments.get("body")
    if isinstance(body, dict):
        parts += [f"{' '.join(_words(k))} {_value_text(v)}" for k, v in body.items()
                  if isinstance(v, str | int | float | bool)]
    if not parts:
        return request + "."
    return f"{request} for {', '.join(parts[:-1])}{' and ' if len(parts) > 1 else ''}" \
           f"{parts[-1]}."


def _request(api: dict[str, Any]) -> str:
    return _with_arguments(_imperative(str(api.get("description") or ""),
                                       str(api.get("api") or "")),
                           dict(api.get("example_arguments") or {}))


def tool_instructions(group: str, n: int, apis: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to ``n`` queries over ``apis`` (see the module docstring)."""
    apis = [a for a in apis if isinstance(a, dict) and a.get("api")]
    singles = [(_request(a), [[str(a.get("tool") or ""), str(a["api"])]]) for a in apis]
    out: list[dict[str, Any]] = []
    if group == "I1" or len(apis) < 2:
        for query, related in singles[:max(0, n)]:
            out.append({"query": query, "related_apis": related})
        return out
    # pairs of APIs; for I2 from different tools, in a fixed order
    pairs: list[tuple[int, int]] = []
    for i in range(len(apis)):
        for j in range(i + 1, len(apis)):
            if group == "I2" and apis[i].get("tool") == apis[j].get("tool"):
                continue
            pairs.append((i, j))
    used: Counter[int] = Counter()
    pairs.sort(key=lambda p: (p[1] - p[0] != 1, p))  # neighbours first, then the rest
    for i, j in pairs:
        if len(out) >= n:
            break
        if used[i] >= 2 or used[j] >= 2:  # spread the queries over the APIs
            continue
        used[i] += 1
        used[j] += 1
        second = singles[j][0]
        out.append({"query": f"{singles[i][0]} Also, {second[0].lower()}{second[1:]}",
                    "related_apis": singles[i][1] + singles[j][1]})
    return out


# --- function calling -----------------------------------------------------------------


def _requests(query: str) -> list[str]:
    parts = [p.strip(" ,") for p in _SPLIT_CLAUSE.split(" ".join(query.split()))]
    return [p for p in parts if _terms(p)] or [query]


def _schema_type(schema: dict[str, Any]) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    return str(t or "string")


def _coerce(value: str, kind: str) -> Any:
    try:
        if kind == "integer":
            return int(float(value))
        if kind == "number":
            return float(value)
        if kind == "boolean":
            return value.lower() in ("true", "yes", "1")
    except ValueError:
        return None
    return value


def _near_name(request: str, name: str) -> str | None:
    words = _words(name)
    if not words:
        return None
    pattern = r"\b" + r"[\s_-]*".join(re.escape(w) for w in words) + \
        r"s?\b\s*(?:is|=|:|of|to)?\s*(\"[^\"]+\"|'[^']+'|[\w@.:/-]+)"
    m = re.search(pattern, request, flags=re.IGNORECASE)
    if not m:
        return None
    value = m.group(1).strip("\"'").rstrip(".,")
    return value if value.lower() not in STOPWORDS else None


def fill_arguments(request: str, function: dict[str, Any]) -> dict[str, Any]:
    """Arguments for ``function`` (an OpenAI ``function`` object) found in ``request``."""
    params = function.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    required = set(params.get("required") or ())
    quoted = [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(request)]
    numbers = _NUMBER.findall(_QUOTED.sub(" ", request))
    low = request.lower()
    args: dict[str, Any] = {}
    for name, schema in props.items():
        schema = schema if isinstance(schema, dict) else {}
        kind = _schema_type(schema)
        if kind in ("object", "array"):
            continue
        value: Any = None
        enum = [e for e in schema.get("enum") or () if isinstance(e, str | int | float)]
        for option in sorted(enum, key=lambda e: -len(str(e))):
            if re.search(r"\b" + re.escape(str(option).lower()) + r"\b", low):
                value = option
                break
        if value is None:
            near = _near_name(request, name)
            if near is not None:
                value = _coerce(near, kind)
        if value is None:
            for key in ("example", "default"):
                hint = schema.get(key)
                if hint is not None and str(hint).lower() in low:
                    value = hint
                    break
        if value is None and kind == "string" and quoted:
            value = quoted.pop(0)
        if value is None and kind in ("integer", "number") and numbers:
            value = _coerce(numbers.pop(0), kind)
        if value is None and name in required and "default" in schema:
            value = schema["default"]
        if value is not None:
            args[name] = value
            if isinstance(value, str) and value in quoted:
                quoted.remove(value)
    return args


def _observation(content: str) -> tuple[bool, str]:
    try:
        data = json.loads(content)
    except (ValueError, TypeError):
        return True, content
    if isinstance(data, dict) and "error" in data:
        response = data.get("response")
        text = response if isinstance(response, str) else json.dumps(response,
                                                                      ensure_ascii=False)
        return not data.get("error"), text or ""
    return True, content


def _history(messages: Sequence[Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """The path's calls ``{step, name, arguments, ok, observation}``, and the functions a
    diversity prompt after the last call lists as this node's previous actions."""
    calls: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    avoid: set[str] = set()
    for m in messages:
        role = _get(m, "role")
        if role == "assistant":
            step = _STEP.match(_get(m, "content") or "")
            for c in _get(m, "tool_calls") or ():
                name, arguments, cid = _call_parts(c)
                entry = {"step": int(step.group(1)) - 1 if step else None, "name": name,
                         "arguments": arguments, "ok": False, "observation": ""}
                calls.append(entry)
                by_id[cid] = entry
            avoid = set()
        elif role in ("tool", "function"):
            entry = by_id.get(_get(m, "tool_call_id") or "") or (calls[-1] if calls else None)
            if entry is not None:
                entry["ok"], entry["observation"] = _observation(_get(m, "content") or "")
        elif role == "user" and "previous actions" in (_get(m, "content") or ""):
            avoid = _previous_actions(_get(m, "content") or "")
    return calls, avoid


def _previous_actions(text: str) -> set[str]:
    start = text.find("[")
    end = text.rfind("]")
    if start < 0 or end <= start:
        return set()
    try:
        items = json.loads(text[start:end + 1])
    except ValueError:
        return set()
    return {str(i.get("name")) for i in items if isinstance(i, dict) and i.get("name")}


def _get(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, dict) else getattr(m, key, None)


def _call_parts(c: Any) -> tuple[str, str, str]:
    if isinstance(c, dict):
        fn = c.get("function") or c
        return str(fn.get("name")), str(fn.get("arguments") or "{}"), str(c.get("id") or "")
    return str(c.name), str(c.arguments), str(c.id)


def _shorten(text: str, limit: int = ANSWER_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def tool_call(query: str, messages: Sequence[Any], tools: Sequence[dict[str, Any]]
              ) -> tuple[str, str, dict[str, Any]]:
    """The next step for ``query``: ``(thought, function name, arguments)``."""
    names = {(t.get("function") or {}).get("name") for t in tools}
    index = _Index(tools)
    requests = _requests(query)
    calls, avoid = _history(messages)
    k = len(requests)
    answers: list[tuple[str, str]] = []
    for i, request in enumerate(requests):
        mine = [c for c in calls if c["step"] == i]
        done = next((c for c in mine if c["ok"]), None)
        if done is not None:
            answers.append((request, _shorten(done["observation"]) or "(empty result)"))
            continue
        tried = {c["name"] for c in mine} | avoid
        ranked = [(s, t) for s, t in index.rank(request)
                  if s >= MIN_SCORE and t["function"]["name"] not in tried]
        if not ranked:
            why = (f"no function left for request {i + 1} ({request!r}): tried "
                   f"{', '.join(sorted(tried)) or 'none'}") if mine or avoid else \
                  f"no function matches request {i + 1} ({request!r})"
            return (f"Step {i + 1}/{k}: {why}. I give up and restart.", FINISH,
                    {"return_type": "give_up_and_restart"})
        score, tool = ranked[0]
        fn = tool["function"]
        args = fill_arguments(request, fn)
        return (f"Step {i + 1}/{k}: the request {request!r} matches {fn['name']} "
                f"(similarity {score:.2f}); calling it with {json.dumps(args)}.",
                fn["name"], args)
    if FINISH not in names:
        raise ValueError("the functions offered do not include Finish")
    final = " ".join(f"{r.rstrip('.')}: {a}" for r, a in answers) if k > 1 else answers[0][1]
    return ("I now have every result the task asks for; I give the final answer.", FINISH,
            {"return_type": "give_answer", "final_answer": final})
