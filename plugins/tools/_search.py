"""What DFSDT and ReAct share (ToolLLM, Qin et al. 2023, §2.3 and App. A.1): the prompts,
the functions offered (every sampled operation plus ``Finish``), one step of the agent
(a teacher call, then the real calls it asks for), and the observations.

The prompts are ToolBench's (OpenBMB/ToolBench, ``toolbench/inference/Prompts``): the
function-calling system prompt ("You are AutoGPT, ..."), the task description of the
RapidAPI environment (with our tools in place of RapidAPI's), the user turn
("{query}\\nBegin!") and the DFSDT diversity prompt. Observations are written as ToolBench
writes them, ``{"error": "...", "response": "..."}``, with ToolBench's status codes (0
ok, 1 no such function, 2 bad arguments, 3 final answer, 4 give up, 5 time-out, 6 not
found, 8 unauthorized, 9 too many requests, 12 any other failed call).

**A base model** (a teacher with ``base_model``, such as the ``local`` teacher on Gemma 3
270M) cannot call functions through a chat API. It continues a ReAct transcript instead
(``react_prompt``), the format of ToolLLM's ReAct baseline: one worked example of another
API, the path's functions and ``Finish`` (name, parameter names, description), the
question, every call made on the path so far with its observation, then ``Action:``. A
grammar (``react_grammar``: a known function's name, ``Action Input:`` and a one-line
JSON object) holds the continuation to one call where the teacher enforces one, and
``parse_react`` turns it into the turn's ``ToolCall``, which runs and is kept exactly as
a chat model's would be. Departures: no "Thought:" (a 270M model does not keep it short),
no system prompt, at most 160 tokens per call, and since a base model cannot read DFSDT's
diversity note, the call after one is sampled at temperature 0.7 or more instead of
being greedy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from syllabus.contracts import (
    FINISH_TOOL,
    TASK_TOOL_CALL,
    ApiTool,
    ChatMessage,
    Completion,
    GenerationParams,
    SolveResult,
    Teacher,
    TeacherError,
    ToolCall,
    ToolCaller,
    ToolInstruction,
)

__all__ = [
    "DIVERSITY_PROMPT",
    "FINISH_FUNCTION",
    "SYSTEM_PROMPT",
    "USER_PROMPT",
    "Budget",
    "Environment",
    "Step",
    "option",
]

# --- ToolBench's prompts ----------------------------------------------------------------

SYSTEM_PROMPT = """You are AutoGPT, you can use many tools(functions) to do the following task.
First I will give you the task description, and your task start.
At each step, you need to give your thought to analyze the status now and what to do next, \
with a function call to actually excute your step.
After the call, you will get the call result, and you are now in a new state.
Then you will analyze your status now, then decide what to do next...
After many (Thought-call) pairs, you finally perform the task, then you can give your \
finial answer.
Remember:
1.the state change is irreversible, you can't go back to one of the former state, if you \
want to restart the task, say "I give up and restart".
2.All the thought is short, at most in 5 sentence.
3.You can do more then one trys, so if your plan is to continusly try some conditions, you \
can do one of the conditions per try.
Let's Begin!
Task description: {task_description}"""

TASK_DESCRIPTION = """You should use functions to help handle the real time user querys. \
Remember:
1.ALWAYS call "Finish" function at the end of the task. And the final answer should contain \
enough information to show to the user,If you can't handle the task, or you find that \
function calls always fail(the function is not valid now), use function \
Finish->give_up_and_restart.
2.Do not use origin tool names, use only subfunctions' names.
You have access of the following tools:
"""

USER_PROMPT = """
{query}
Begin!
"""

DIVERSITY_PROMPT = """This is not the first time you try this task, all previous trails failed.
Before you generate my thought for this state, I will first show you your previous actions \
for this state, and then you must generate actions that is different from all of them. \
Here are some previous actions candidates:
{previous_candidate}
Remember you are now in the intermediate state of a trail, you will first analyze the now \
state and previous action candidates, then make actions that is different from all the \
previous."""

FINISH_FUNCTION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": FINISH_TOOL,
        "description": "If you believe that you have obtained a result that can answer the "
                       "task, please call this function to provide the final answer. "
                       "Alternatively, if you recognize that you are unable to proceed with "
                       "the task in the current state, call this function to restart. "
                       "Remember: you must ALWAYS call this function at the end of your "
                       "attempt, and the only part that will be shown to the user is the "
                       "final answer, so it should contain sufficient information.",
        "parameters": {
            "type": "object",
            "properties": {
                "return_type": {"type": "string",
                                "enum": ["give_answer", "give_up_and_restart"]},
                "final_answer": {"type": "string",
                                 "description": "The final answer you want to give the user. "
                                                "You should have this field if "
                                                "\"return_type\"==\"give_answer\""},
            },
            "required": ["return_type"],
        },
    },
}

# ToolBench's status codes
OK, NO_SUCH_FUNCTION, BAD_INPUT, FINAL_ANSWER, GIVE_UP = 0, 1, 2, 3, 4
TIMEOUT, NOT_FOUND, UNAUTHORIZED, TOO_MANY, CALL_FAILED = 5, 6, 8, 9, 12


def option(options: dict[str, Any], key: str, default: Any, kind: type = int,
           minimum: float | None = None) -> Any:
    """``options[key]`` as ``kind`` (``default`` when unset), with a clear error."""
    raw = options.get(key, default)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"option {key!r} must be a {kind.__name__}, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"option {key!r} must be at least {minimum}, got {raw!r}")
    return value


@dataclass
class Budget:
    """The query budget (teacher calls) of one search, and what it has spent."""

    max_queries: int
    teacher_calls: int = 0
    api_calls: int = 0

    @property
    def spent(self) -> bool:
        return self.teacher_calls >= self.max_queries


@dataclass
class Step:
    """One node of the search: an assistant turn and the observations of its calls."""

    assistant: ChatMessage
    observations: list[ChatMessage] = field(default_factory=list)
    #: (function name, arguments text, observation, status code) per call
    actions: list[tuple[str, str, str, int]] = field(default_factory=list)
    code: int = OK
    final_answer: str | None = None

    @property
    def messages(self) -> list[ChatMessage]:
        return [self.assistant, *self.observations]

    @property
    def finished(self) -> bool:
        return self.code == FINAL_ANSWER

    @property
    def gave_up(self) -> bool:
        return self.code == GIVE_UP


def _code_for(status: int | None, error: str | None) -> int:
    text = (error or "").lower()
    if "timeout" in text or "timed out" in text:
        return TIMEOUT
    if status == 404:
        return NOT_FOUND
    if status in (401, 403):
        return UNAUTHORIZED
    if status == 429:
        return TOO_MANY
    return CALL_FAILED


def _observation(error: str, response: Any) -> str:
    return json.dumps({"error": error, "response": response}, ensure_ascii=False)


class Environment:
    """The functions of one instruction (its sampled tools and ``Finish``), the teacher
    that chooses and the caller that runs them."""

    def __init__(self, instruction: ToolInstruction, tools: list[ApiTool], *,
                 teacher: Teacher, caller: ToolCaller, budget: Budget,
                 temperature: float = 0.0, max_tokens: int = 1024) -> None:
        allowed = set(instruction.sampled_tools) or {t.name for t in tools}
        self.tools = {t.name: t for t in tools if t.name in allowed}
        missing = sorted(allowed - set(self.tools))
        if missing:
            raise ValueError(f"instruction {instruction.instruction_id}: sampled tools "
                             f"{', '.join(missing)} are not among the spec's working tools")
        self.instruction = instruction
        self.teacher = teacher
        self.caller = caller
        self.budget = budget
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.functions = [t.openai_tool() for t in self.tools.values()] + [FINISH_FUNCTION]
        self.stats: dict[str, int] = {"hallucinated_calls": 0, "failed_calls": 0,
                                      "bad_arguments": 0, "no_call_turns": 0}

    @classmethod
    def from_options(cls, instruction: ToolInstruction, tools: list[ApiTool], *,
                     teacher: Teacher, caller: ToolCaller,
                     options: dict[str, Any]) -> Environment:
        """The environment of a searcher's options: its budget of ``max_queries`` teacher
        calls (40), ``temperature`` (0.0) and ``max_tokens`` (1024)."""
        return cls(instruction, tools, teacher=teacher, caller=caller,
                   budget=Budget(max_queries=option(options, "max_queries", 40, int, 1)),
                   temperature=option(options, "temperature", 0.0, float, 0.0),
                   max_tokens=option(options, "max_tokens", 1024, int, 1))

    def result(self, method: str, root: list[ChatMessage], steps: list[Step], *,
               solved: bool, gave_up: bool, stats: dict[str, Any],
               error: str | None = None) -> SolveResult:
        """The ``SolveResult`` of the path ``root`` + ``steps`` (the final answer is the last
        step's, when it called ``Finish``); ``error``, if any, goes into ``stats``."""
        if error:
            stats["error"] = error
        last = steps[-1] if steps else None
        return SolveResult(
            method=method, solved=solved, gave_up=gave_up,
            final_answer=last.final_answer if last is not None and last.finished else None,
            messages=transcript(root, steps), teacher_calls=self.budget.teacher_calls,
            api_calls=self.budget.api_calls, tools=self.functions, stats=stats)

    def root(self) -> list[ChatMessage]:
        """The system and user messages every path starts with."""
        lines = [f"{i + 1}.{t.category}: {t.name}: {' '.join(t.description.split())[:512]}"
                 for i, t in enumerate(self.tools.values())]
        system = SYSTEM_PROMPT.replace("{task_description}",
                                       TASK_DESCRIPTION + "\n".join(lines))
        return [ChatMessage(role="system", content=system),
                ChatMessage(role="user",
                            content=USER_PROMPT.replace("{query}", self.instruction.query))]

    async def think(self, messages: list[ChatMessage]) -> Completion:
        """One teacher call (counted against the budget). A base model (a teacher with
        ``base_model``) continues a ReAct transcript instead (``react_prompt``): its
        ``Action:``/``Action Input:`` become the turn's one function call."""
        self.budget.teacher_calls += 1
        if getattr(self.teacher, "base_model", False):
            # a base model cannot read DFSDT's diversity note ("try something else"): the
            # call after one is sampled (at 0.7 at least) so that it can differ
            diverse = bool(messages) and messages[-1].role == "user" and \
                messages[-1].content.startswith(DIVERSITY_PROMPT[:40])
            done = await self.teacher.complete(messages, params=GenerationParams(
                temperature=max(self.temperature, 0.7) if diverse else self.temperature,
                max_tokens=min(self.max_tokens, 160),
                task=TASK_TOOL_CALL, inputs={"query": self.instruction.query},
                prompt=react_prompt(self.instruction.query, self.tools.values(), messages),
                grammar=react_grammar(self.tools), stop=["\nObservation:"]))
            call = parse_react(done.text)
            return done.model_copy(update={"text": "" if call else done.text,
                                           "tool_calls": [call] if call else []})
        return await self.teacher.complete(messages, params=GenerationParams(
            temperature=self.temperature, max_tokens=self.max_tokens, task=TASK_TOOL_CALL,
            inputs={"query": self.instruction.query}, tools=self.functions,
            tool_choice="auto"))

    async def step(self, completion: Completion, index: int) -> Step:
        """Run the calls of an assistant turn for real; ``index`` numbers the turn (call
        ids are made unique per path with it when the model gave none)."""
        calls = [c if c.id else c.model_copy(update={"id": f"call_{index}_{i}"})
                 for i, c in enumerate(completion.tool_calls)]
        step = Step(assistant=ChatMessage(role="assistant", content=completion.text or "",
                                          tool_calls=calls or None))
        if not calls:
            self.stats["no_call_turns"] += 1
        for call in calls:
            observation, code, answer = await self._run(call)
            step.observations.append(ChatMessage(role="tool", content=observation,
                                                 tool_call_id=call.id, name=call.name))
            step.actions.append((call.name, call.arguments, observation, code))
            if code in (FINAL_ANSWER, GIVE_UP):
                step.code = code
                step.final_answer = answer
                # Finish ends the turn: calls after it are not made, so they are not kept
                # (every kept call has its observation, as the chat protocol requires)
                step.assistant.tool_calls = calls[:len(step.actions)]
                break
            if code != OK:
                step.code = code
        return step

    async def _run(self, call: ToolCall) -> tuple[str, int, str | None]:
        try:
            args = json.loads(call.arguments or "{}", strict=False)
        except ValueError as exc:
            self.stats["bad_arguments"] += 1
            return _observation(f"the arguments are not valid JSON: {exc}", ""), BAD_INPUT, None
        if not isinstance(args, dict):
            self.stats["bad_arguments"] += 1
            return _observation("the arguments must be a JSON object", ""), BAD_INPUT, None
        if call.name == FINISH_TOOL:
            kind = args.get("return_type")
            if kind == "give_up_and_restart":
                return json.dumps({"response": "chose to give up and restart"}), GIVE_UP, None
            if kind == "give_answer":
                answer = args.get("final_answer")
                if not isinstance(answer, str):
                    return _observation('must have "final_answer"', ""), BAD_INPUT, None
                return (json.dumps({"response": "successfully giving the final answer."}),
                        FINAL_ANSWER, answer)
            return _observation('"return_type" is not a valid choice', ""), BAD_INPUT, None
        tool = self.tools.get(call.name)
        if tool is None:
            self.stats["hallucinated_calls"] += 1
            return _observation(f"No such function name: {call.name}", ""), \
                NO_SUCH_FUNCTION, None
        self.budget.api_calls += 1
        response = await self.caller.call(tool, args)
        if response.ok:
            return _observation("", response.observation), OK, None
        self.stats["failed_calls"] += 1
        error = response.error or (f"HTTP {response.status}" if response.status else "failed")
        return _observation(error, response.observation if response.status else ""), \
            _code_for(response.status, response.error), None


#: a base model's ReAct example (ToolLLM's Thought/Action/Action Input/Observation format,
#: less the thought, which a 270M model does not keep short): an unrelated API, one call,
#: its observation, and Finish
REACT_EXAMPLE = (
    "Functions:\n"
    "- getForecast(city, days): the weather forecast for a city\n"
    "- Finish(return_type, final_answer): the final answer (return_type \"give_answer\")\n"
    "Question: Will it rain in Oslo tomorrow?\n"
    "Action: getForecast\n"
    'Action Input: {"city": "Oslo", "days": 1}\n'
    'Observation: {"error": "", "response": "{\\"rain_mm\\": 4.2}"}\n'
    "Action: Finish\n"
    'Action Input: {"return_type": "give_answer", "final_answer": "Yes: about 4 mm of '
    'rain is forecast in Oslo tomorrow."}\n\n')
_REACT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*\n\s*Action Input:\s*(\{.*\})", re.DOTALL)


def react_prompt(query: str, tools: Any, messages: list[ChatMessage]) -> str:
    """A base model's prompt for the next call of a path: ``REACT_EXAMPLE``, the path's
    functions (name, parameter names, description) and Finish, the question, then each
    call made so far with its observation, and ``Action:``. The system prompt and DFSDT's
    diversity note (chat texts a base model does not follow) are left out."""
    lines = []
    for t in tools:
        props = (t.parameters or {}).get("properties") or {}
        lines.append(f"- {t.name}({', '.join(props)}): "
                     f"{' '.join((t.description or t.name).split())[:200]}")
    lines.append(f"- {FINISH_TOOL}(return_type, final_answer): the final answer "
                 '(return_type "give_answer"), or "give_up_and_restart"')
    out = [REACT_EXAMPLE + "Functions:\n" + "\n".join(lines), f"Question: {query}"]
    for m in messages:
        if m.role == "assistant":
            for c in m.tool_calls or ():
                out += [f"Action: {c.name}", f"Action Input: {c.arguments}"]
        elif m.role == "tool":
            out.append(f"Observation: {' '.join(m.content.split())[:1500]}")
    return "\n".join(out) + "\nAction:"


def react_grammar(tools: dict[str, Any]) -> str:
    """GBNF for one ReAct call: a known function's name, then ``Action Input:`` and a
    one-line JSON object (its inside is checked when the call is made)."""
    names = [*tools, FINISH_TOOL]
    alts = " | ".join(json.dumps(n) for n in names)
    return ('root ::= " " name "\\nAction Input: {" [^\\n]* "}"\n'
            f"name ::= {alts}")


def parse_react(text: str) -> ToolCall | None:
    """The call in a base model's ``Action:`` continuation, or None."""
    m = _REACT.match(text)
    if not m:
        return None
    return ToolCall(id="", name=m.group(1), arguments=m.group(2).split("\n", 1)[0].strip())


def transcript(root: list[ChatMessage], steps: list[Step]) -> list[dict[str, Any]]:
    """The OpenAI chat messages of a path."""
    out = [m.openai() for m in root]
    for s in steps:
        out += [m.openai() for m in s.messages]
    return out


def give_up_reason(exc: TeacherError) -> str:
    return f"teacher error: {exc}"
