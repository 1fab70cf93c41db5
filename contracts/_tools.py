"""What the api-annotator's steps share (ToolLLM, Qin et al. 2023): tools made from an
OpenAPI spec, the verdicts of API filtering, generated instructions, and the guarded
HTTP caller that every real call goes through.

The api-annotator runs four steps, each a plugin registered through
``register_tool_annotators``; an object says which step it is by ``stage``:

==============  ==========================  ============================================
stage           Protocol                    what it does
==============  ==========================  ============================================
``filter``      ``ApiFilter``               calls every tool once; keeps the working ones
``instructions````InstructionGenerator``    writes I1/I2/I3 instructions for sampled tools
``solver``      ``SolutionSearcher``        annotates one instruction (DFSDT, ReAct)
``eval``        ``ToolEvaluator``           scores finished searches (ToolEval pass rate)
==============  ==========================  ============================================

A plugin never opens a socket itself: it receives a ``ToolCaller`` (the runtime's
allow-listed, size- and time-capped HTTP client) and calls tools through it.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ._protocols import Failure, Teacher

__all__ = [
    "FINISH_TOOL",
    "ApiFilter",
    "ApiTool",
    "ApiVerdict",
    "InstructionGenerator",
    "InstructionGroup",
    "SolutionSearcher",
    "SolveResult",
    "ToolAnnotator",
    "ToolCaller",
    "ToolEvaluator",
    "ToolInstruction",
    "ToolResponse",
    "ToolStage",
    "evaluator_takes_teacher",
]

InstructionGroup = Literal["I1", "I2", "I3"]
ToolStage = Literal["filter", "instructions", "solver", "eval"]
ParamLocation = Literal["path", "query", "header", "cookie", "body"]

#: The name of the extra function every DFSDT/ReAct search offers (ToolLLM App. A.1).
FINISH_TOOL = "Finish"


class ApiTool(BaseModel):
    """One operation of a spec, as a function an LLM can call."""

    name: str = Field(description="function name, unique within the spec "
                                  "(from operationId, else method and path)")
    description: str
    #: JSON schema (type object) of the arguments: one property per path, query and header
    #: parameter, plus ``body`` for a request body
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object",
                                                                "properties": {}})
    #: where each argument goes in the request
    locations: dict[str, ParamLocation] = Field(default_factory=dict)
    #: argument name -> the parameter's name in the request, where they differ (a query
    #: and a path parameter of the same name, or a name that is not a valid identifier)
    aliases: dict[str, str] = Field(default_factory=dict)
    category: str = Field(description="the operation's first tag, else the spec's title")
    method: str = Field(description="upper-case HTTP method")
    path: str = Field(description="path template, e.g. /hives/{hive_id}")
    server: str = Field(description="base URL the path is joined to")
    #: media type the ``body`` argument is sent as (JSON, form, ...), when there is a body
    request_media_type: str | None = None
    #: media type of the declared success response, when there is one
    response_media_type: str | None = None
    #: JSON schema of the declared success response (``$ref``s resolved), when there is one
    response_schema: dict[str, Any] | None = None
    #: arguments built from the spec's examples, defaults and schemas (for API filtering)
    example_arguments: dict[str, Any] = Field(default_factory=dict)
    spec_id: str = ""

    def openai_tool(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this operation."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": self.parameters}}


class ToolResponse(BaseModel):
    """What one real call returned, already compressed and truncated to the budget."""

    ok: bool
    status: int | None = None
    #: the (compressed, truncated) body the model observes, or the error text
    observation: str = ""
    error: str | None = None
    media_type: str | None = None
    elapsed_seconds: float = 0.0
    truncated: bool = False
    #: size of the body as received (decoded), before compression and truncation
    body_bytes: int = 0
    #: the body parsed as JSON (before compression; ``observation`` may be cut short)
    json_body: bool = False


class ApiVerdict(BaseModel):
    """API filtering's decision on one tool, with the reason (ToolLLM §2.1)."""

    tool: str
    kept: bool
    reason: str = Field(description="'ok', or why it was dropped: timeout, status 5xx, "
                                     "html error page, empty body, not json, refused, ...")
    status: int | None = None
    elapsed_seconds: float = 0.0
    sample: str = Field(default="", description="the start of the observed response")
    #: the particulars behind ``reason`` (the refusal or error message, the status, ...)
    detail: str = ""


class ToolInstruction(BaseModel):
    """A generated instruction with the APIs it needs (ToolLLM App. B.1)."""

    instruction_id: str
    group: InstructionGroup
    query: str
    relevant_apis: list[str] = Field(description="tool names the query needs")
    #: the sampled tools the generator was shown (the solver may call only these)
    sampled_tools: list[str]
    category: str | None = None


class SolveResult(BaseModel):
    """One search over an instruction: the trajectory of the path that finished (or the
    last one tried), and what the search cost."""

    method: str
    solved: bool = Field(description="finished with give_answer and a non-empty answer")
    gave_up: bool = False
    final_answer: str | None = None
    #: OpenAI chat messages of the kept path: system, user, assistant tool_calls, tool
    messages: list[dict[str, Any]] = Field(default_factory=list)
    teacher_calls: int = 0
    api_calls: int = 0
    #: the OpenAI ``tools`` the search offered (the sampled operations and ``Finish``)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    #: nodes expanded, backtracks, and why the search stopped
    stats: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class ToolCaller(Protocol):
    """The runtime's guarded HTTP client. It refuses hosts outside the allow-list,
    private/loopback/link-local addresses unless allowed (also after DNS and after each
    redirect), destructive methods outside sandbox hosts, and caps size and time. A refusal
    comes back as ``ToolResponse(ok=False, error="refused: ...")``; it never raises for a
    failed call."""

    async def call(self, tool: ApiTool, arguments: dict[str, Any]) -> ToolResponse: ...


@runtime_checkable
class ToolAnnotator(Protocol):
    """What ``register_tool_annotators`` registers: one step of the api-annotator."""

    name: str
    stage: ToolStage


@runtime_checkable
class ApiFilter(ToolAnnotator, Protocol):
    async def check(self, tools: list[ApiTool], *, caller: ToolCaller,
                    options: dict[str, Any]) -> list[ApiVerdict]: ...


@runtime_checkable
class InstructionGenerator(ToolAnnotator, Protocol):
    async def generate(self, tools: list[ApiTool], *, group: InstructionGroup,
                       teacher: Teacher, options: dict[str, Any]
                       ) -> tuple[list[ToolInstruction], list[Failure]]:
        """Sample tools for ``group`` (seeded by ``options``), prompt the teacher, and drop
        instructions that name APIs outside the sample (as a ``Failure`` with the reason)."""
        ...


@runtime_checkable
class SolutionSearcher(ToolAnnotator, Protocol):
    async def solve(self, instruction: ToolInstruction, tools: list[ApiTool], *,
                    teacher: Teacher, caller: ToolCaller,
                    options: dict[str, Any]) -> SolveResult: ...


@runtime_checkable
class ToolEvaluator(ToolAnnotator, Protocol):
    """``evaluate`` is either plain (``evaluate(results)``, e.g. ToolEval's rule-based
    pass rate) or a coroutine taking ``teacher=`` and ``options=`` keywords (a judge, e.g.
    ToolEval's judged pass rate and win rate): ``evaluator_takes_teacher`` tells which."""

    def evaluate(self, results: list[tuple[ToolInstruction, SolveResult]]
                 ) -> dict[str, Any]:
        """Scores per instruction group and method."""
        ...


def evaluator_takes_teacher(evaluator: Any) -> bool:
    """Whether ``evaluator.evaluate`` is the judging form (accepts ``teacher=``; awaited)."""
    try:
        return "teacher" in inspect.signature(evaluator.evaluate).parameters
    except (TypeError, ValueError):
        return False
