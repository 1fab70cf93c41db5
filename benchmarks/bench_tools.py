"""Tool-use annotation benchmark: pass rate and teacher calls per solved instruction of
ReAct and DFSDT (ToolLLM, Qin et al. 2023, Table 3) on a generated task set with
failure-prone tools, per instruction group.

    python benchmarks/bench_tools.py              # 2 seeds x 50 tasks per group, ~75 s
    python benchmarks/bench_tools.py --tasks 100 --p-err 0.3 --seeds 0,1,2 --json out.json

What runs (all real except the model):

* a real local HTTP API (``tests/tool_search_api.LocalToolApi``, uvicorn on 127.0.0.1)
  with 4 tools (groups of operations) of 4 APIs each: 2 working APIs that check their
  ``key`` argument (a wrong key is a 400), and 2 failure-prone decoys with near-identical
  descriptions (one answers 500, one an HTML error page);
* tasks: I1 needs 1 working API, I2 needs 2 APIs of 2 different tools, I3 needs 3 APIs
  of 3 different tools; each query names the keys to use;
* the project's ``dfsdt`` and ``react`` plugins, calling the API through the guarded
  caller (``GuardedCaller``, 127.0.0.1 allowed explicitly);
* a simulated teacher in place of ChatGPT: an error-prone policy that speaks the same
  function-calling protocol (``Completion.tool_calls``). For the next API the task needs it
  makes the right call with probability ``1 - p_err``, else a wrong one (a decoy or a wrong
  key, half each); after a failed call it gives up (``Finish(give_up_and_restart)``) with
  probability ``p_give_up``; when every needed API has answered it gives the answer. It
  follows the DFSDT diversity prompt: actions listed there as tried at this node are not
  chosen again. Its randomness is a hash of ``seed``, the query and the messages it sees,
  so a node re-expanded with the diversity prompt gets a fresh draw, and both methods
  see the same policy.

Both methods get the same budget: at most ``--max-depth`` (8) turns on a path and
``--max-queries`` (40) teacher calls per task; DFSDT has width 2. Pass rate is ToolEval's
rule-based one (``toolevalrule``); "calls/task" is teacher calls per task, "calls/solved"
teacher calls per passed task (ToolLLM's query cost: the failed tasks' calls included),
"API calls/solved" the real calls per passed task.

ToolLLM's Table 3 (ChatGPT): DFSDT's pass rate is above ReAct's in every group, and the
gap is larger on the multi-tool groups (I2, I3) than on single-tool I1. The last lines
of the output say whether this run shows the same ordering.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # for tests.tool_search_api
    sys.path.insert(0, str(ROOT))

from syllabus.contracts import (  # noqa: E402
    ChatMessage,
    Completion,
    GenerationParams,
    ToolCall,
    ToolInstruction,
)
from syllabus.plugins.tools.dfsdt import DFSDTSearcher  # noqa: E402
from syllabus.plugins.tools.react import ReActSearcher  # noqa: E402
from syllabus.plugins.tools.tooleval import ToolEvalRule  # noqa: E402

GROUP_APIS = {"I1": 1, "I2": 2, "I3": 3}
TOOLS = ["hives", "weather", "market", "sites"]
DIVERSITY = "This is not the first time you try this task"


@dataclass
class Task:
    instruction: ToolInstruction
    #: the APIs to call, in order, with their right arguments
    plan: list[tuple[str, dict[str, str]]]


def build_api(tool_spec: Any) -> list[Any]:
    specs = []
    for tool in TOOLS:
        for i in (1, 2):
            specs.append(tool_spec(f"{tool}_lookup_{i}", f"Looks up {tool} record set {i} by key",
                                   required={"key": f"{tool[:3]}-{i}-ok"}, category=tool))
        specs.append(tool_spec(f"{tool}_lookup_v0", f"Looks up {tool} records by key (legacy)",
                               behaviour="500", required={"key": None}, category=tool))
        specs.append(tool_spec(f"{tool}_lookup_beta", f"Looks up {tool} records by key (beta)",
                               behaviour="html", required={"key": None}, category=tool))
    return specs


def make_tasks(n: int, group: str, seed: int) -> list[Task]:
    rng = random.Random(f"tasks:{seed}:{group}")
    out = []
    for k in range(n):
        tools = rng.sample(TOOLS, GROUP_APIS[group])
        plan = []
        for tool in tools:
            i = rng.choice((1, 2))
            plan.append((f"{tool}_lookup_{i}", {"key": f"{tool[:3]}-{i}-ok"}))
        query = " Also, ".join(f"look up {name.split('_')[0]} record set "
                               f"{name[-1]} with key {args['key']}" for name, args in plan)
        sampled = sorted({f"{t}_{s}" for t in tools
                          for s in ("lookup_1", "lookup_2", "lookup_v0", "lookup_beta")})
        out.append(Task(ToolInstruction(
            instruction_id=f"{group}-{k}", group=group, query=f"For request {group}-{k}, {query}.",
            relevant_apis=[p[0] for p in plan], sampled_tools=sampled), plan))
    return out


class SimulatedPolicy:
    """An error-prone function-calling policy (see the module docstring)."""

    kind = "simulated"

    def __init__(self, tasks: Sequence[Task], *, p_err: float, p_give_up: float,
                 seed: int) -> None:
        self.plans = {t.instruction.query: t.plan for t in tasks}
        self.p_err = p_err
        self.p_give_up = p_give_up
        self.seed = seed
        self.model = f"policy(p_err={p_err:g}, p_give_up={p_give_up:g})"

    async def complete(self, messages: Sequence[ChatMessage], *,
                       params: GenerationParams) -> Completion:
        query = params.inputs["query"]
        plan = self.plans[query]
        digest = hashlib.sha256(json.dumps(
            [self.seed, query, [m.model_dump(mode="json", exclude_none=True)
                                for m in messages]]).encode()).hexdigest()
        rng = random.Random(digest)
        calls: list[tuple[str, str, bool]] = []
        by_id: dict[str, int] = {}
        avoid: set[tuple[str, str]] = set()
        for m in messages:
            if m.role == "assistant":
                avoid = set()
                for c in m.tool_calls or ():
                    by_id[c.id] = len(calls)
                    calls.append((c.name, c.arguments, False))
            elif m.role == "tool" and m.tool_call_id in by_id:
                i = by_id[m.tool_call_id]
                ok = not json.loads(m.content).get("error")
                calls[i] = (calls[i][0], calls[i][1], ok)
            elif m.role == "user" and DIVERSITY in m.content:
                listed = json.loads(m.content[m.content.index("["):m.content.rindex("]") + 1])
                avoid = {(d["name"], d["arguments"]) for d in listed if d.get("name")}
        done = {(name, args) for name, args, ok in calls if ok}
        todo = [(n, json.dumps(a)) for n, a in plan if (n, json.dumps(a)) not in done]
        if not todo:
            return self._call(len(calls), "Finish", {
                "return_type": "give_answer",
                "final_answer": f"Done: {', '.join(n for n, _ in plan)} answered."})
        if calls and not calls[-1][2] and rng.random() < self.p_give_up:
            return self._call(len(calls), "Finish", {"return_type": "give_up_and_restart"})
        name, args = todo[0]
        tool = name.rsplit("_", 2)[0]
        wrong = [(f"{tool}_lookup_v0", args), (f"{tool}_lookup_beta", args),
                 (name, json.dumps({"key": "wrong-key"}))]
        right = (name, args)
        options = [a for a in wrong if a not in avoid]
        if right in avoid or (options and rng.random() < self.p_err):
            choice = rng.choice(options) if options else right
        else:
            choice = right
        return self._call(len(calls), choice[0], json.loads(choice[1]))

    def _call(self, n: int, name: str, args: dict[str, Any]) -> Completion:
        arguments = json.dumps(args)
        return Completion(text=f"Step {n}: calling {name}.", model=self.model,
                          tool_calls=[ToolCall(id=f"c{n}-{hashlib.sha1(arguments.encode()).hexdigest()[:6]}",
                                               name=name, arguments=arguments)],
                          finish_reason="tool_calls")


async def run_once(api: Any, tasks: list[Task], *, seed: int, p_err: float,
                   p_give_up: float, options: dict[str, Any]) -> list[tuple[Any, Any]]:
    tools = api.tools()
    policy = SimulatedPolicy(tasks, p_err=p_err, p_give_up=p_give_up, seed=seed)
    results = []
    async with api.caller() as caller:
        for searcher in (ReActSearcher(), DFSDTSearcher()):
            for task in tasks:
                result = await searcher.solve(task.instruction, tools, teacher=policy,
                                              caller=caller, options=options)
                results.append((task.instruction, result))
    return results


def _git() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return commit + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=50, help="tasks per group and seed (50)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds; rows pool them")
    ap.add_argument("--p-err", type=float, default=0.3, help="wrong-call probability (0.3)")
    ap.add_argument("--p-give-up", type=float, default=0.5,
                    help="probability of giving up after a failed call (0.5)")
    ap.add_argument("--max-depth", type=int, default=8)
    ap.add_argument("--max-queries", type=int, default=40)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from tests.tool_search_api import LocalToolApi, ToolSpec

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    options = {"max_depth": args.max_depth, "max_queries": args.max_queries, "width": 2}
    print(f"bench_tools  {time.strftime('%Y-%m-%d %H:%M:%S')}  commit {_git()}  "
          f"Python {platform.python_version()} on {platform.platform()}")
    print(f"tasks per group {args.tasks}, seeds {seeds}, p_err {args.p_err}, "
          f"p_give_up {args.p_give_up}, max_depth {args.max_depth}, "
          f"max_queries {args.max_queries}, DFSDT width 2\n")
    pooled: list[tuple[Any, Any]] = []
    started = time.perf_counter()
    with LocalToolApi(build_api(ToolSpec)) as api:
        for seed in seeds:
            tasks = [t for g in GROUP_APIS for t in make_tasks(args.tasks, g, seed)]
            pooled += asyncio.run(run_once(api, tasks, seed=seed, p_err=args.p_err,
                                           p_give_up=args.p_give_up, options=options))
        hits = sum(api.hits.values())
    elapsed = time.perf_counter() - started
    report = ToolEvalRule().evaluate(pooled)
    api_calls: dict[tuple[str, str], int] = {}
    for ins, res in pooled:
        for g in (ins.group, "all"):
            api_calls[(res.method, g)] = api_calls.get((res.method, g), 0) + res.api_calls

    header = f"{'group':<6}{'method':<8}{'tasks':>6}{'passed':>8}{'pass rate':>11}" \
             f"{'calls/task':>12}{'calls/solved':>14}{'API calls/solved':>18}"
    print(header)
    print("-" * len(header))
    rates: dict[tuple[str, str], float] = {}
    for group in [*GROUP_APIS, "all"]:
        for method in ("react", "dfsdt"):
            row = report["methods"][method][group]
            rates[(method, group)] = row["pass_rate"]
            per_api = (f"{api_calls[(method, group)] / row['passed']:.2f}"
                       if row["passed"] else "-")
            cps = f"{row['calls_per_solved']:.2f}" if row["calls_per_solved"] else "-"
            per_task = row["teacher_calls"] / row["instructions"]
            print(f"{group:<6}{method:<8}{row['instructions']:>6}{row['passed']:>8}"
                  f"{row['pass_rate']:>11.1%}{per_task:>12.2f}{cps:>14}{per_api:>18}")
    print(f"\n{len(pooled)} searches, {hits} real HTTP calls, {elapsed:.1f} s")
    gaps = {g: rates[("dfsdt", g)] - rates[("react", g)] for g in GROUP_APIS}
    above = all(gap > 0 for gap in gaps.values())
    larger = min(gaps["I2"], gaps["I3"]) > gaps["I1"]
    print("DFSDT - ReAct pass rate: " + ", ".join(f"{g} {v:+.1%}" for g, v in gaps.items()))
    print(f"ToolLLM Table 3 ordering (DFSDT > ReAct in every group): "
          f"{'same' if above else 'DIFFERENT'}")
    print(f"larger gap on multi-tool (I2, I3) than on I1: {'same' if larger else 'DIFFERENT'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "eval": report, "gaps": gaps,
                                         "seconds": elapsed}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
