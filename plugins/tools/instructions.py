"""``toolllm-instructions``: instruction generation as ToolLLM does it (Qin et al. 2023,
"ToolLLM: Facilitating Large Language Models to Master 16000+ Real-world APIs", §2.2 and
App. B.1; the prompts of OpenBMB/ToolBench's generation scripts).

**Tools and APIs.** ToolLLM samples *APIs* (RapidAPI endpoints) grouped into *tools*
(RapidAPI services) grouped into *categories*. Here an API is one operation of the spec
(an ``ApiTool``), a **tool is a group of operations**: the operations sharing a tag
(``ApiTool.category``, the first tag); when a spec has fewer than two tags, the operations
sharing the first segment of their path (``/hives/...``, ``/inspections/...``). The
**category** is the spec itself (one API product).

**Sampling** (seeded by ``options["seed"]``, so a rerun makes the same prompts):

* ``I1`` single-tool: one tool, and a sliding window of its APIs (window 10, step 3, as
  the paper's I1 script, plus a last window ending at the last API when the steps do not
  reach it, so every API can be sampled); ``samples`` windows are drawn from all the
  tools' windows. Its instructions' category is the tool's (its tag).
* ``I2`` intra-category multi-tool: 2-5 tools of the spec (``min_tools``/``max_tools``),
  at most 3 APIs of each (``max_apis_per_tool``). A spec with fewer than ``min_tools``
  tools has no I2 sample: ``skipped_reason`` says why (the service records it).
* ``I3`` whole-spec (the paper's intra-collection): every tool of the spec when it has at
  most ``i3_max_tools`` (5) tools, else, as the paper samples 2-5 tools of a collection,
  between ``min_tools`` and ``i3_max_tools`` of them at random; at most 3 APIs of each.

The category of I2 and I3 instructions is the spec (its title, ``options["category"]``,
which the api-annotator sets; else the sampled tools' one category, if they share one).

**The prompt** is the paper's: the system message "You are QueryGPT, ...", the task
description of single-tool (I1) or multi-tool (I2, I3) instructions, three in-context
seed examples (drawn from ``SEED_EXAMPLES`` or ``options["seed_examples"]``), the note
"These are only examples ... INPUT:", the sampled APIs' documentation as JSON (name,
description, method, path, parameter schema, example arguments), and the closing
requirements ("Please produce ten queries ..."). One departure: the answer format is
written as valid JSON (``[{"query": ..., "related_apis": [...]}]``) instead of the
paper's ``[{Query1: ..., 'related_apis': [...]}]``, which is not; the parser accepts both.

**Filtering.** An instruction whose ``related_apis`` names an API outside the sampled set
(or pairs an API with a tool it is not in) is dropped as a ``Failure`` with the reason
``hallucinated api: ...``; so are instructions with an empty query or no related APIs.
Output that cannot be parsed is retried once with the parse error shown to the teacher,
then reported as a ``Failure`` with the raw output. A teacher call that fails (after the
runtime's retries) is a ``Failure`` of that sample (``teacher error: ...``); the other
samples go on.

**A base model** (a teacher with ``base_model``, such as the ``local`` teacher on Gemma 3
270M) gets a few-shot completion prompt per request instead (``base_prompt``): three
APIs of unrelated products, each with a request that needs it, then the sampled API line
and ``Request that needs <name>:``; the continuation's first line is the query. The APIs
each request is for are chosen beforehand (``base_targets``: I1 one API each; I2 and I3
two APIs of two tools), so they are its ``related_apis``. Departures: no QueryGPT system
prompt, task description or JSON, one request per call, at most 48 tokens, and the
related APIs are given, not chosen by the model (a 270M base model followed neither the
instructions nor the format: it continued the chat with role markers, and asked to name
the APIs it copied the examples' names). Whether a request can be solved with its APIs is
left to the DFSDT search and its verification, as for any instruction.

Options: ``seed`` (0), ``samples`` (samples per group, 3), ``queries_per_sample`` (10, the
paper's), ``window`` (10) and ``step`` (3) for I1, ``min_tools`` (2), ``max_tools`` (5),
``max_apis_per_tool`` (3), ``i3_max_tools`` (5), ``temperature`` (0.6, the paper's),
``max_tokens`` (2048), ``seed_examples`` (a list of strings), ``category`` (the spec's
title, set by the service). ``check_options`` validates them (``min_tools`` at most
``max_tools`` and ``i3_max_tools``) with an error naming the option.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from syllabus.contracts import (
    TASK_TOOL_INSTRUCTIONS,
    ApiTool,
    ChatMessage,
    Failure,
    GenerationParams,
    InstructionGroup,
    Teacher,
    TeacherError,
    ToolInstruction,
    content_id,
    hookimpl,
)

from ._search import option

__all__ = ["SEED_EXAMPLES", "InstructionGenerator", "base_prompt", "base_targets",
           "parse_base_request", "parse_queries", "register_tool_annotators", "sample",
           "tool_groups"]

SYSTEM = ("You are QueryGPT, a helpful assistant who can strictly follow my instructions to "
          "generate diverse real queries.")

SINGLE_TOOL = (
    "You will be provided with a tool, its description, all of the tool's available API "
    "functions, the descriptions of these API functions, and the parameters required for each "
    "API function. Your task involves creating {n} varied, innovative, and detailed user "
    "queries that employ multiple API functions of a tool. For instance, if the tool 'climate "
    "news' has three API calls - 'get_all_climate_change_news', 'look_up_climate_today', and "
    "'historical_climate', your query should articulate something akin to: first, determine "
    "today's weather, then verify how often it rains in Ohio in September, and finally, find "
    "news about climate change to help me understand whether the climate will change anytime "
    "soon. This query exemplifies how to utilize all API calls of 'climate news'. A query that "
    "only uses one API call will not be accepted. Additionally, you must incorporate the input "
    "parameters required for each API call. To achieve this, generate random information for "
    "required parameters such as IP address, location, coordinates, etc. For instance, don't "
    "merely say 'an address', provide the exact road and district names. Don't just mention 'a "
    "product', specify wearables, milk, a blue blanket, a pan, etc. Don't refer to 'my "
    "company', invent a company name instead. The first seven of the ten queries should be "
    "very specific. Each single query should combine all API call usages in different ways and "
    "include the necessary parameters. Note that you shouldn't ask 'which API to use', rather, "
    "simply state your needs that can be addressed by these APIs. You should also avoid asking "
    "for the input parameters required by the API call, but instead directly provide the "
    "parameter in your query. The final three queries should be complex and lengthy, "
    "describing a complicated scenario where all the API calls can be utilized to provide "
    "assistance within a single query. You should first think about possible related API "
    "combinations, then give your query. Related_apis are apis that can be used for a give "
    "query; those related apis have to strictly come from the provided api names. For each "
    "query, there should be multiple related_apis; for different queries, overlap of related "
    "apis should be as little as possible. Deliver your response in this format: "
    '[{{"query": "......", "related_apis": [api1, api2, api3...]}}, {{"query": "......", '
    '"related_apis": [api4, api5, api6...]}}, ...]\n')

MULTI_TOOL = (
    "You will be provided with several tools, tool descriptions, all of each tool's available "
    "API functions, the descriptions of these API functions, and the parameters required for "
    "each API function. Your task involves creating {n} varied, innovative, and detailed user "
    "queries that employ API functions of multiple tools. For instance, given three tools "
    "'nba_news' 'cat-facts' 'hotels': 'nba_news' has API functions \"Get individual NBA source "
    "news\" and \"Get all NBA news\", \"cat-facts\" has API functions \"Get all facts about "
    "cat\" and \"Get a random fact about cats\", 'hotels' has API functions "
    "\"properties/get-details (Deprecated)\", \"properties/list (Deprecated)\" and "
    "\"locations/v3/search\". Your query should articulate something akin to: \"I want to name "
    "my newborn cat after Kobe and host a party to celebrate its birth. Get me some cat facts "
    "and nba news to gather inspirations for the cat name. Also, find a proper hotel around my "
    "house in Houston Downtown for the party.\" This query exemplifies how to utilize API calls "
    "of all the given tools. A query that uses API calls of only one tool will not be "
    "accepted. Additionally, you must incorporate the input parameters required for each API "
    "call. To achieve this, generate random information for required parameters such as IP "
    "address, location, coordinates, etc. For instance, don't merely say 'an address', provide "
    "the exact road and district names. Don't just mention 'a product', specify wearables, "
    "milk, a blue blanket, a pan, etc. Don't refer to 'my company', invent a company name "
    "instead. The first seven of the ten queries should be very specific. Each single query "
    "should combine API calls of different tools in various ways and include the necessary "
    "parameters. Note that you shouldn't ask 'which API to use', rather, simply state your "
    "needs that can be addressed by these APIs. You should also avoid asking for the input "
    "parameters required by the API call, but instead directly provide the parameters in your "
    "query. The final three queries should be complex and lengthy, describing a complicated "
    "scenario where all the provided API calls can be utilized to provide assistance within a "
    "single query. You should first think about possible related API combinations, then give "
    "your query. Related_apis are apis that can be used for a give query; those related apis "
    "have to strictly come from the provided api names. For each query, there should be "
    "multiple related_apis; for different queries, overlap of related apis should be as little "
    "as possible. Deliver your response in this format: [{{\"query\": \"......\", "
    "\"related_apis\": [[<tool name>, <api name>], [<tool name>, <api name>]...]}}, "
    "{{\"query\": \"......\", \"related_apis\": [[<tool name>, <api name>], ...]}}, ...]\n")

EXAMPLES_NOTE = ("\nThese are only examples to show you how to write the query. Do not use apis "
                 "listed in the above examples, but rather, use the ones listed below in the "
                 "INPUT.\nINPUT:\n")

REQUIREMENTS = (
    "\nPlease produce {n} queries in line with the given requirements and inputs. These {n} "
    "queries should display a diverse range of sentence structures: some queries should be in "
    "the form of imperative sentences, others declarative, and yet others, interrogative. "
    "Equally, they should encompass a variety of tones, with some being polite, others "
    "straightforward. Ensure they vary in length and contain a wide range of subjects: myself, "
    "my friends, family, and company. Aim to include a number of engaging queries as long as "
    "they relate to API calls. Keep in mind that for each query, invoking just one API won't "
    "suffice; each query should call upon two to five APIs. However, try to avoid explicitly "
    "specifying which API to employ in the query. Each query should consist of a minimum of "
    "thirty words.")

#: in-context seed examples (the first is the paper's App. B.1 example)
SEED_EXAMPLES = [
    '{"query": "For my best friend\'s surprise birthday party, I require inspiration for party '
    'games and decorations. Kindly suggest some random words that can serve as themes for the '
    'party. Furthermore, I\'m interested in gathering news articles about the latest party '
    'trends to ensure a modern celebration. Also, I would appreciate details about the local '
    'hotels in my area for accommodation options. Your assistance is greatly appreciated.", '
    '"related_apis": [["Random Words", "Get multiple random words"], ["thedigitalnewsfeederapi",'
    ' "Getting News Articles"], ["thedigitalnewsfeederapi", "Getting all news articles"]]}',
    '{"query": "My family is driving from Lyon to Geneva on 14 March. Could you check the '
    'weather forecast for both cities that day and tell me which border crossing has the '
    'shortest waiting time around 9 am?", "related_apis": [["weather", "get_forecast"], '
    '["borders", "list_crossing_wait_times"]]}',
    '{"query": "I run a small bakery called Crumb & Co. Please list the orders placed for '
    'pickup on Saturday, mark order 4417 as ready, and show me which ingredients fall below '
    'ten units in stock so I can reorder them.", "related_apis": [["orders", "list_orders"], '
    '["orders", "update_order_status"], ["inventory", "list_low_stock"]]}',
    '{"query": "What is the exchange rate from Norwegian krone to euro today, and how much '
    'would 2,350 NOK be after a 1.5% card fee?", "related_apis": [["currency", '
    '"get_exchange_rate"], ["currency", "convert_amount"]]}',
]

_QUERY_KEY = re.compile(r"^\s*query\s*\d*\s*:?\s*(.*)$", re.IGNORECASE | re.DOTALL)


def _first_segment(path: str) -> str:
    for part in path.strip("/").split("/"):
        if part and not part.startswith("{"):
            return part
    return "root"


def tool_groups(tools: list[ApiTool]) -> dict[str, list[ApiTool]]:
    """ToolLLM's "tools": operations grouped by tag, else by first path segment."""
    groups: dict[str, list[ApiTool]] = defaultdict(list)
    for t in tools:
        groups[t.category].append(t)
    if len(groups) < 2:
        groups = defaultdict(list)
        for t in tools:
            groups[_first_segment(t.path)].append(t)
    return {k: sorted(v, key=lambda t: t.name) for k, v in sorted(groups.items())}


def _windows(apis: list[ApiTool], window: int, step: int) -> list[list[ApiTool]]:
    """The paper's I1 sliding window over one tool's APIs, and a last window ending at the
    last API when the steps stop short of it (12 APIs, window 10, step 3: 0-9 and 2-11)."""
    if len(apis) <= window:
        return [apis]
    out = []
    for i in range(0, len(apis), step):
        chunk = apis[i:i + window]
        if len(chunk) < window:
            break
        out.append(chunk)
    if out[-1][-1] is not apis[-1]:
        out.append(apis[-window:])
    return out


def sample(tools: list[ApiTool], group: InstructionGroup, *, rng: random.Random,
           samples: int, window: int = 10, step: int = 3, min_tools: int = 2,
           max_tools: int = 5, max_apis_per_tool: int = 3,
           i3_max_tools: int = 5) -> list[dict[str, list[ApiTool]]]:
    """The tool samples for ``group``: each a mapping of tool name to its sampled APIs."""
    _check_counts(min_tools, max_tools, i3_max_tools)
    groups = tool_groups(tools)
    if not groups:
        return []
    if group == "I1":
        candidates = [{name: w} for name, apis in groups.items()
                      for w in _windows(apis, window, step)]
        if len(candidates) > samples:
            candidates = rng.sample(candidates, samples)
        return candidates

    def distinct(choose: Callable[[], list[str]]) -> list[dict[str, list[ApiTool]]]:
        # up to ``samples`` different samples of the tools ``choose()`` names, at most
        # max_apis_per_tool APIs of each (samples * 4 tries)
        out = []
        seen: set[tuple[str, ...]] = set()
        for _ in range(samples * 4):
            if len(out) >= samples:
                break
            names = choose()
            picked = {n: sorted(rng.sample(groups[n], min(max_apis_per_tool, len(groups[n]))),
                                key=lambda t: t.name) for n in names}
            key = tuple(t.name for apis in picked.values() for t in apis)
            if key not in seen:
                seen.add(key)
                out.append(picked)
        return out

    if group == "I2":
        if len(groups) < min_tools:
            return []
        return distinct(lambda: sorted(rng.sample(
            sorted(groups), rng.randint(min_tools, min(max_tools, len(groups))))))

    # I3: the whole spec (at most i3_max_tools of its tools)
    def whole_spec() -> list[str]:
        names = sorted(groups)
        if len(names) > i3_max_tools:
            names = sorted(rng.sample(names, rng.randint(min_tools, i3_max_tools)))
        return names

    return distinct(whole_spec)


def _check_counts(min_tools: int, max_tools: int, i3_max_tools: int) -> None:
    if min_tools > max_tools:
        raise ValueError(f"toolllm-instructions: option 'min_tools' ({min_tools}) must not "
                         f"be more than option 'max_tools' ({max_tools})")
    if min_tools > i3_max_tools:
        raise ValueError(f"toolllm-instructions: option 'min_tools' ({min_tools}) must not "
                         f"be more than option 'i3_max_tools' ({i3_max_tools})")


def _sampling(options: dict[str, Any]) -> dict[str, int]:
    """The sampling options, checked (an error names the option)."""
    out = {"samples": option(options, "samples", 3, int, 1),
           "window": option(options, "window", 10, int, 1),
           "step": option(options, "step", 3, int, 1),
           "min_tools": option(options, "min_tools", 2, int, 2),
           "max_tools": option(options, "max_tools", 5, int, 2),
           "max_apis_per_tool": option(options, "max_apis_per_tool", 3, int, 1),
           "i3_max_tools": option(options, "i3_max_tools", 5, int, 2)}
    _check_counts(out["min_tools"], out["max_tools"], out["i3_max_tools"])
    return out


def _api_doc(tool: ApiTool) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "method": tool.method,
            "path": tool.path, "parameters": tool.parameters,
            "example_arguments": tool.example_arguments}


def _input_doc(picked: dict[str, list[ApiTool]]) -> Any:
    tools = [{"tool_name": name, "tool_description": f"operations of {name}",
              "api_list": [_api_doc(t) for t in apis]} for name, apis in picked.items()]
    return tools[0] if len(tools) == 1 else tools


#: a base model's few-shot completion prompt: APIs of unrelated products, each with a
#: request that needs them; the sampled API (or APIs) follow, and the model writes the
#: request (a 270M base model neither follows QueryGPT's instructions nor writes the JSON
#: list: it continued the chat with role markers; asked for the API names too, it copied
#: the examples' names)
BASE_EXAMPLES = (
    "API: getForecast(city, days): the weather forecast for a city, for up to 7 days\n"
    "Request that needs getForecast: Will it rain in Oslo over the next three days?\n\n"
    "API: reserveBook(book_id, member_id): reserve a book for a library member\n"
    "Request that needs reserveBook: Please reserve book 5521 for member 204.\n\n"
    "APIs: getAlerts(region): the weather warnings in force for a region; "
    "getForecast(city, days): the weather forecast for a city\n"
    "Request that needs getAlerts and getForecast: Are there storm warnings for the "
    "Bergen region, and what is tomorrow's forecast for Bergen?\n\n")


def _base_api(tool: ApiTool) -> str:
    props = (tool.parameters or {}).get("properties") or {}
    description = " ".join((tool.description or tool.name).split())[:160]
    return f"{tool.name}({', '.join(props)}): {description}"


def base_targets(picked: dict[str, list[ApiTool]], group: InstructionGroup, n: int
                 ) -> list[list[ApiTool]]:
    """The APIs each of a base model's ``n`` requests is written for: I1 one API each,
    in turn; I2 and I3 two APIs of two different tools (every pair of tools in turn)."""
    apis = [t for tools in picked.values() for t in tools]
    if group == "I1" or len(picked) < 2:
        return [[apis[i % len(apis)]] for i in range(min(n, len(apis)))] if apis else []
    tools = list(picked.values())
    pairs = [(a, b) for i in range(len(tools)) for j in range(i + 1, len(tools))
             for a, b in zip(tools[i], tools[j], strict=False)]
    return [list(pairs[i]) for i in range(min(n, len(pairs)))]


def base_prompt(target: list[ApiTool]) -> str:
    """The few-shot completion prompt for a request that needs ``target``:
    ``BASE_EXAMPLES``, the API line(s), then ``Request that needs <names>:``."""
    head = "API: " if len(target) == 1 else "APIs: "
    return (BASE_EXAMPLES + head + "; ".join(map(_base_api, target))
            + f"\nRequest that needs {' and '.join(t.name for t in target)}:")


def parse_base_request(text: str) -> str:
    """The request a base model wrote: its continuation's first line; raises
    ``ValueError`` for one too short or copied from the examples."""
    line = " ".join(text.strip().split("\n", 1)[0].split()).strip('"')
    if len(line) < 8:
        raise ValueError(f"the request is empty or too short: {line!r}")
    if line in BASE_EXAMPLES:
        raise ValueError(f"the request copies an example: {line!r}")
    return line


def _extract_json(text: str) -> Any:
    text = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        raise ValueError("no JSON list in the output")
    return json.loads(text[start:end + 1])


def parse_queries(text: str) -> list[dict[str, Any]]:
    """``[{"query", "related_apis"}]`` from the teacher's text (also the paper's
    ``{"Query1": "...", "related_apis": [...]}`` items); raises ``ValueError``."""
    data = _extract_json(text)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("the output is not a JSON list")
    out: list[dict[str, Any]] = []
    for item in data:
        if not isinstance(item, dict):
            raise ValueError(f"an item is not an object: {json.dumps(item)[:200]}")
        query: Any = None
        related: Any = None
        for key, value in item.items():
            low = key.lower().replace(" ", "_")
            if low in ("related_apis", "relatedapis", "apis"):
                related = value
            elif query is None and _QUERY_KEY.match(key):
                rest = _QUERY_KEY.match(key).group(1).strip()  # type: ignore[union-attr]
                query = value if isinstance(value, str) and value.strip() else rest
        out.append({"query": query if isinstance(query, str) else "",
                    "related_apis": related if isinstance(related, list) else []})
    return out


class InstructionGenerator:
    """ToolLLM's instruction generation (see the module docstring)."""

    name = "toolllm-instructions"
    stage = "instructions"

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the option when ``options`` cannot work (called by
        the service when it starts, and by ``generate``)."""
        _sampling(options)
        option(options, "seed", 0, int)
        option(options, "queries_per_sample", 10, int, 1)
        option(options, "temperature", 0.6, float, 0.0)
        option(options, "max_tokens", 2048, int, 1)

    def skipped_reason(self, tools: list[ApiTool], group: InstructionGroup,
                       options: dict[str, Any]) -> str | None:
        """Why ``group`` has no sample for these tools (None when it has some)."""
        groups = tool_groups(tools)
        if not groups:
            return f"{group}: no working operations to sample"
        min_tools = _sampling(options)["min_tools"]
        if group == "I2" and len(groups) < min_tools:
            return (f"I2 needs at least {min_tools} tools (option 'min_tools') and the spec "
                    f"has {len(groups)} ({', '.join(groups)}); operations are grouped into "
                    "tools by their first tag, else by the first segment of their path")
        return None

    async def generate(self, tools: list[ApiTool], *, group: InstructionGroup,
                       teacher: Teacher, options: dict[str, Any]
                       ) -> tuple[list[ToolInstruction], list[Failure]]:
        self.check_options(options)
        seed = option(options, "seed", 0, int)
        n = option(options, "queries_per_sample", 10, int, 1)
        rng = random.Random(f"{seed}:{group}")
        picks = sample(tools, group, rng=rng, **_sampling(options))
        seeds = [str(s) for s in options.get("seed_examples") or SEED_EXAMPLES]
        params = {"temperature": option(options, "temperature", 0.6, float, 0.0),
                  "max_tokens": option(options, "max_tokens", 2048, int, 1)}
        category = str(options["category"]) if options.get("category") else None
        instructions: list[ToolInstruction] = []
        failures: list[Failure] = []
        seen: set[str] = set()
        for picked in picks:
            try:
                got, failed = await self._one(picked, group, n, teacher, rng, seeds, params,
                                              category)
            except TeacherError as exc:  # retries spent: this sample fails, the rest go on
                apis = ", ".join(t.name for apis in picked.values() for t in apis)
                got, failed = [], [Failure(reason=f"teacher error: {exc}",
                                           raw_output=f"sampled apis: {apis}")]
            failures += failed
            for ins in got:
                if ins.instruction_id not in seen:
                    seen.add(ins.instruction_id)
                    instructions.append(ins)
        return instructions, failures

    async def _one(self, picked: dict[str, list[ApiTool]], group: InstructionGroup, n: int,
                   teacher: Teacher, rng: random.Random, seeds: list[str],
                   params: dict[str, Any], category: str | None = None
                   ) -> tuple[list[ToolInstruction], list[Failure]]:
        template = SINGLE_TOOL if group == "I1" else MULTI_TOOL
        examples = "\n".join(rng.sample(seeds, min(3, len(seeds))))
        prompt = (template.format(n=n) + examples + EXAMPLES_NOTE
                  + json.dumps(_input_doc(picked), indent=4, ensure_ascii=False)
                  + REQUIREMENTS.format(n=n) + "\nOUTPUT:\n")
        messages = [ChatMessage(role="system", content=SYSTEM),
                    ChatMessage(role="user", content=prompt)]
        inputs = {"group": group, "n": n,
                  "apis": [{"tool": name, "api": t.name, "description": t.description,
                            "parameters": t.parameters,
                            "example_arguments": t.example_arguments}
                           for name, apis in picked.items() for t in apis]}
        if getattr(teacher, "base_model", False):
            return await self._one_base(picked, group, n, teacher, params, messages, inputs,
                                        category)
        gen = GenerationParams(task=TASK_TOOL_INSTRUCTIONS, inputs=inputs, **params)
        completion = await teacher.complete(messages, params=gen)
        try:
            items = parse_queries(completion.text)
        except ValueError as exc:  # one retry, showing the error
            retry = [*messages, ChatMessage(role="assistant", content=completion.text),
                     ChatMessage(role="user", content=f"Your output could not be parsed ({exc})."
                                 " Answer again with only the JSON list, in the format asked.")]
            completion = await teacher.complete(retry, params=gen)
            try:
                items = parse_queries(completion.text)
            except ValueError as exc2:
                return [], [Failure(reason=f"unparseable instructions: {exc2}",
                                    raw_output=completion.text)]
        return self._check(items, picked, group, category)

    async def _one_base(self, picked: dict[str, list[ApiTool]], group: InstructionGroup,
                        n: int, teacher: Teacher, params: dict[str, Any],
                        messages: list[ChatMessage], inputs: dict[str, Any],
                        category: str | None) -> tuple[list[ToolInstruction], list[Failure]]:
        """A base model writes one request per ``base_targets`` entry (a continuation of
        ``base_prompt``, one line, at most 48 tokens); an unusable one is asked once more,
        then reported with its raw text."""
        async def one(target: list[ApiTool]) -> dict[str, Any] | Failure:
            gen = GenerationParams(task=TASK_TOOL_INSTRUCTIONS, inputs=inputs,
                                   temperature=params["temperature"],
                                   max_tokens=min(params["max_tokens"], 48), stop=["\n"],
                                   prompt=base_prompt(target))
            text, error = "", ValueError("no output")
            for attempt in (1, 2):
                completion = await teacher.complete(
                    messages, params=gen.model_copy(update={"attempt": attempt}))
                text = completion.text
                try:
                    return {"query": parse_base_request(text),
                            "related_apis": [t.name for t in target]}
                except ValueError as exc:
                    error = exc
            return Failure(reason=f"unparseable instructions: {error}", raw_output=text)

        got = await asyncio.gather(*(one(t) for t in base_targets(picked, group, n)))
        items = [g for g in got if isinstance(g, dict)]
        instructions, failures = self._check(items, picked, group, category)
        return instructions, [g for g in got if isinstance(g, Failure)] + failures

    def _check(self, items: list[dict[str, Any]], picked: dict[str, list[ApiTool]],
               group: InstructionGroup, category: str | None = None
               ) -> tuple[list[ToolInstruction], list[Failure]]:
        tool_of = {t.name: name for name, apis in picked.items() for t in apis}
        sampled = sorted(tool_of)
        categories = {t.category for apis in picked.values() for t in apis}
        if group == "I1" or not category:  # I1: the tool's; I2/I3: the spec's
            category = next(iter(categories)) if len(categories) == 1 else None
        out: list[ToolInstruction] = []
        failures: list[Failure] = []
        for item in items:
            raw = json.dumps(item, ensure_ascii=False)
            query = " ".join(str(item.get("query") or "").split())
            if not query:
                failures.append(Failure(reason="instruction with an empty query", raw_output=raw))
                continue
            related: list[str] = []
            bad: list[str] = []
            for ref in item.get("related_apis") or ():
                if isinstance(ref, list | tuple) and len(ref) == 2:
                    tool, api = str(ref[0]), str(ref[1])
                    if api not in tool_of or tool_of[api] != tool:
                        bad.append(f"{tool}/{api}")
                        continue
                elif isinstance(ref, str):
                    api = ref
                    if api not in tool_of:
                        bad.append(api)
                        continue
                else:
                    bad.append(json.dumps(ref))
                    continue
                if api not in related:
                    related.append(api)
            if bad:
                failures.append(Failure(
                    reason=f"hallucinated api: {', '.join(bad)} not in the sampled set "
                           f"({', '.join(sampled)})", raw_output=raw))
                continue
            if not related:
                failures.append(Failure(reason="instruction names no related apis",
                                        raw_output=raw))
                continue
            iid = content_id(group, query, related, sampled)[:24]
            out.append(ToolInstruction(
                instruction_id=iid, group=group, query=query, relevant_apis=related,
                sampled_tools=sampled, category=category))
        return out, failures


@hookimpl
def register_tool_annotators(register: Any) -> None:
    register(InstructionGenerator())
