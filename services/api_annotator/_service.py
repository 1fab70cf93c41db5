"""The api-annotator handler: ``ApiSpecSubmitted`` in, ``ToolTrajectory`` out.

For each spec (ToolLLM, Qin et al. 2023, end to end):

1. load it from the store (``specs/<spec_id>``) with ``load_spec``; an invalid one (or
   one missing from the store) is reported on ``syllabus.generation.failed`` (stage
   ``api-annotator``) and acknowledged;
2. API filtering (the ``filter`` plugin): every operation is called once through the
   guarded caller, which turns whatever goes wrong in one call (a refused or invalid URL,
   a time-out, a reset) into that operation's verdict, never an exception; the verdicts,
   with reasons, go to ``tools/<spec_id>/filter.json``
   with a fingerprint of what they depend on (the filter, its options, the call policy,
   the run, the operations). A redelivery of the same spec in the same run finds them
   there and reuses them: no API is called twice (real servers, and allowed POSTs);
3. instruction generation (the ``instructions`` plugin) for each configured group (I1,
   I2, I3); instructions naming APIs outside their sample, unusable output and failed
   teacher calls go to ``syllabus.generation.failed`` with the reason; a group with no
   sample (I2 on a spec with one tool) is recorded with why in ``eval.json``
   (``instructions.<group>.skipped``) and the log;
4. solution search (the ``solver`` plugin, DFSDT by default) on every instruction, through
   the guarded caller. Every search is published on ``syllabus.tools.annotated``: the solved
   ones (``solved=True``) are the training data; the unsolved ones are published too, with
   ``solved=False``, the last path tried and ``reason`` (give-up, budget, exhausted,
   teacher_error...), so "why is there no trajectory for this instruction?" has an
   answer. A teacher failure ends that one search (``teacher_error``), never the spec;
   so does a solver that raises (``error: <type>: <message>``). The data set builder
   takes only solved trajectories;
5. evaluation (the ``evaluator`` plugin, ToolEval's rule-based pass rate) per group and
   method, over the solver and the ``compare_solvers`` (run on the same instructions for
   the evaluation only); the summary goes to ``tools/<spec_id>/eval.json`` and the log.

Ids hash their inputs (spec, instruction, solver and its options, teacher), so a
redelivery publishes nothing twice.

What fails the same way on every delivery is reported once and acknowledged, never handed
back to the bus to be retried: an invalid or missing spec, a filter plugin that raises
(``generation.failed`` with ``the filter <name> failed: ...``, and ``error`` in
``eval.json``), an instruction plugin that raises on a group (that group's failure), a
solver that raises on a search (that search, unsolved) and an evaluator that raises
(``eval_error`` in ``eval.json``). Only what may pass on a retry (the store, the bus, a
teacher error that a plugin lets out) fails the delivery.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

from faststream.nats import NatsRouter
from prometheus_client import Counter as PromCounter

from syllabus.contracts import (
    API_SPECS_SUBMITTED,
    GENERATION_FAILED,
    ApiSpecSubmitted,
    ApiTool,
    ApiVerdict,
    Failure,
    GenerationFailed,
    PluginRef,
    SolveResult,
    TeacherError,
    TeacherRef,
    ToolInstruction,
    ToolTrajectory,
    content_id,
    evaluator_takes_teacher,
    tool_eval_key,
    tool_filter_key,
)

from ..runtime import HandlerContext, ManagedTeacher, ObjectNotFound, Registered, Runtime
from ._caller import CallPolicy, GuardedCaller
from ._specs import SpecError, load_spec

__all__ = ["SERVICE", "SpecOutcome", "annotate_spec", "build_router"]

SERVICE = "api-annotator"
HOOK = "register_tool_annotators"
log = logging.getLogger("syllabus.api_annotator")

TOOL_CHECKS = PromCounter("syllabus_tool_checks_total",
                          "API filtering verdicts (ToolLLM §2.1)", ["outcome", "reason"])
TOOL_INSTRUCTIONS = PromCounter("syllabus_tool_instructions_total",
                                "Generated instructions by group and outcome",
                                ["group", "outcome"])
TOOL_SEARCHES = PromCounter("syllabus_tool_searches_total",
                            "Solution searches by method, group and outcome",
                            ["method", "group", "outcome"])
TOOL_SEARCH_CALLS = PromCounter("syllabus_tool_search_calls_total",
                                "Teacher and API calls made by solution searches",
                                ["method", "kind"])


class SpecOutcome(dict):
    """What one spec gave (also written as ``eval.json``)."""


def _plugin(rt: Runtime, name: str, stage: str) -> Registered:
    reg = rt.plugins.get(HOOK, name)
    if getattr(reg.obj, "stage", None) != stage:
        raise ValueError(f"api_annotator: {name!r} is a {reg.obj.stage!r} plugin, not a "
                         f"{stage!r} one")
    return reg


def _ref(reg: Registered) -> PluginRef:
    return PluginRef(name=reg.name, version=reg.version)


async def _fail(rt: Runtime, event: ApiSpecSubmitted, technique: PluginRef,
                teacher: TeacherRef, failure: Failure, key: str) -> None:
    await rt.bus.publish(GenerationFailed(
        collection=event.collection, stage=SERVICE, technique=technique, teacher=teacher,
        chunk_id=None, record_id=key, reason=failure.reason,
        raw_output=failure.raw_output[:20000], run_id=event.run_id), subject=GENERATION_FAILED)


async def annotate_spec(rt: Runtime, event: ApiSpecSubmitted, *, teacher: ManagedTeacher,
                        filter_reg: Registered | None, generator: Registered,
                        solver: Registered, compare: list[Registered],
                        evaluator: Registered | None) -> SpecOutcome:
    """Run the four steps on one spec and publish what they give (module docstring)."""
    cfg = rt.settings.api_annotator
    outcome = SpecOutcome(spec_id=event.spec_id, filename=event.filename,
                          collection=event.collection)
    try:
        data = await rt.to_thread(rt.store.get, event.store_key)
    except ObjectNotFound:
        return await _spec_failed(rt, event, outcome, _ref(generator), teacher.ref,
                                  f"invalid spec: {event.filename}: {event.store_key} is not "
                                  "in the store", "spec", error=f"{event.store_key} is not "
                                  "in the store")
    try:
        spec = await rt.to_thread(load_spec, data, filename=event.filename,
                                  spec_id=event.spec_id, base_url=cfg.base_url)
    except SpecError as exc:
        return await _spec_failed(rt, event, outcome, _ref(generator), teacher.ref,
                                  f"invalid spec: {exc}", "spec", error=str(exc))
    except Exception as exc:  # load_spec reads bytes only: the same on every delivery
        log.exception("loading %s failed", event.filename)
        why = f"{event.filename}: {type(exc).__name__}: {exc}"
        return await _spec_failed(rt, event, outcome, _ref(generator), teacher.ref,
                                  f"invalid spec: {why}", "spec", error=why)
    for warning in spec.warnings:
        log.warning("%s: %s", event.filename, warning)
    policy = CallPolicy.from_settings(cfg, servers=spec.servers,
                                      allowed_hosts=event.allowed_hosts)
    async with GuardedCaller(policy) as caller:
        try:
            tools = await _filter(rt, event, spec.tools, caller, filter_reg, outcome, policy)
        except _PluginFailed as exc:
            return await _spec_failed(rt, event, outcome, exc.technique, teacher.ref,
                                      str(exc), "filter", error=str(exc))
        instructions = await _instructions(rt, event, tools, teacher, generator, outcome,
                                           category=spec.title)
        results = await _solve_all(rt, event, instructions, tools, teacher, caller, solver,
                                   compare, outcome)
    if evaluator is not None:
        try:
            if evaluator_takes_teacher(evaluator.obj):  # ToolEval's judge
                outcome["eval"] = await evaluator.obj.evaluate(
                    results, teacher=teacher, options=dict(cfg.evaluator_options))
            else:
                outcome["eval"] = evaluator.obj.evaluate(results)
        except Exception as exc:  # the trajectories are out; the summary is missing
            log.exception("%s: the evaluator %s failed", event.filename, evaluator.name)
            outcome["eval"] = {}
            outcome["eval_error"] = (f"the evaluator {evaluator.name} failed: "
                                     f"{type(exc).__name__}: {exc}")
        for method, groups in outcome["eval"].get("methods", {}).items():
            row = groups.get("all", {})
            log.info("%s: %s pass rate %.2f (%d of %d), %s teacher calls per solved",
                     event.filename, method, row.get("pass_rate", 0.0), row.get("passed", 0),
                     row.get("instructions", 0), row.get("calls_per_solved"))
    await _write_outcome(rt, outcome)
    return outcome


class _PluginFailed(Exception):
    """A plugin raised where its failure is the spec's (the same on every delivery)."""

    def __init__(self, technique: PluginRef, message: str) -> None:
        super().__init__(message)
        self.technique = technique


async def _spec_failed(rt: Runtime, event: ApiSpecSubmitted, outcome: SpecOutcome,
                       technique: PluginRef, teacher: TeacherRef, reason: str, what: str,
                       *, error: str) -> SpecOutcome:
    """Report a spec that cannot go on, once (``generation.failed``, ``eval.json``): the
    message is acknowledged, not retried."""
    log.error("%s: %s", event.filename, reason)
    await _fail(rt, event, technique, teacher, Failure(reason=reason),
                f"{event.spec_id}:{what}")
    outcome["error"] = error
    await _write_outcome(rt, outcome)
    return outcome


async def _write_outcome(rt: Runtime, outcome: SpecOutcome) -> None:
    body = json.dumps(outcome, indent=2, sort_keys=True, default=str) + "\n"
    await rt.to_thread(rt.store.put, tool_eval_key(outcome["spec_id"]), body.encode(),
                       content_type="application/json")


def _filter_fingerprint(event: ApiSpecSubmitted, tools: list[ApiTool], reg: Registered,
                        options: dict, policy: CallPolicy) -> str:
    """What the verdicts depend on: the same fingerprint means the stored ones hold."""
    rules = {"allowed": policy.allowed_hosts, "private": policy.allow_private_hosts,
             "sandbox": policy.sandbox_hosts, "writes": sorted(policy.allow_write_methods),
             "credential_hosts": sorted(policy.credentials),  # the host names, no secrets
             "credentials_over_http": policy.credentials_over_http,
             "caps": [policy.max_response_bytes, policy.call_timeout, policy.max_redirects,
                      policy.response_token_budget]}
    return content_id(reg.name, reg.version, options, rules, event.run_id,
                      [t.model_dump(mode="json") for t in tools])[:32]


def _stored_verdicts(rt: Runtime, key: str, fingerprint: str) -> list[ApiVerdict] | None:
    try:
        stored = json.loads(rt.store.get(key))
    except ObjectNotFound:
        return None
    except ValueError as exc:
        log.warning("%s is not readable (%s); calling the APIs again", key, exc)
        return None
    if not isinstance(stored, dict) or stored.get("fingerprint") != fingerprint:
        return None
    try:
        return [ApiVerdict.model_validate(v) for v in stored.get("verdicts") or ()]
    except ValueError as exc:
        log.warning("%s has invalid verdicts (%s); calling the APIs again", key, exc)
        return None


async def _filter(rt: Runtime, event: ApiSpecSubmitted, tools: list[ApiTool],
                  caller: GuardedCaller, reg: Registered | None,
                  outcome: SpecOutcome, policy: CallPolicy | None = None) -> list[ApiTool]:
    cfg = rt.settings.api_annotator
    outcome["tools"] = len(tools)
    if reg is None:
        outcome["working_tools"] = len(tools)
        return tools
    options = dict(cfg.filter_options)
    key = tool_filter_key(event.spec_id)
    fingerprint = _filter_fingerprint(event, tools, reg, options, policy or caller.policy)
    verdicts = await rt.to_thread(_stored_verdicts, rt, key, fingerprint)
    if verdicts is not None and {v.tool for v in verdicts} == {t.name for t in tools}:
        # a redelivery: the APIs were called already (and the writes made); not again
        log.info("%s: reusing the %d stored filter verdicts of %s (no API called again)",
                 event.filename, len(verdicts), key)
        outcome["filter_reused"] = True
    else:
        try:
            verdicts = await reg.obj.check(tools, caller=caller, options=options)
        except TeacherError:
            raise
        except Exception as exc:  # the caller never raises: this is the plugin's own
            log.exception("%s: the filter %s failed", event.filename, reg.name)
            raise _PluginFailed(_ref(reg), f"the filter {reg.name} failed: "
                                f"{type(exc).__name__}: {exc}") from None
        for v in verdicts:
            TOOL_CHECKS.labels(outcome="kept" if v.kept else "dropped",
                               reason=v.reason if not v.kept else "ok").inc()
        body = json.dumps({"spec_id": event.spec_id, "filename": event.filename,
                           "filter": reg.name, "fingerprint": fingerprint,
                           "verdicts": [v.model_dump() for v in verdicts]},
                          indent=2, sort_keys=True) + "\n"
        await rt.to_thread(rt.store.put, key, body.encode(),
                           content_type="application/json")
    kept = {v.tool for v in verdicts if v.kept}
    working = [t for t in tools if t.name in kept]
    dropped = Counter(v.reason for v in verdicts if not v.kept)
    outcome["working_tools"] = len(working)
    outcome["dropped_tools"] = dict(sorted(dropped.items()))
    log.info("%s: %d of %d operations work%s", event.filename, len(working), len(tools),
             "" if not dropped else " (dropped: " + ", ".join(
                 f"{k}: {n}" for k, n in sorted(dropped.items())) + ")")
    return working


async def _instructions(rt: Runtime, event: ApiSpecSubmitted, tools: list[ApiTool],
                        teacher: ManagedTeacher, reg: Registered,
                        outcome: SpecOutcome, *, category: str = "") -> list[ToolInstruction]:
    cfg = rt.settings.api_annotator
    out: list[ToolInstruction] = []
    counts: dict[str, dict[str, int | str]] = {}
    if not tools:
        log.warning("%s: no working operations, so no instructions", event.filename)
    # the category of multi-tool instructions is the spec (its title)
    options = {"category": category, **cfg.instruction_options} if category \
        else dict(cfg.instruction_options)
    for group in cfg.groups if tools else ():
        try:
            made, failures = await reg.obj.generate(tools, group=group, teacher=teacher,
                                                    options=dict(options))
        except TeacherError:
            raise  # a teacher that failed may answer on a retry
        except Exception as exc:  # the plugin's own failure: this group's, reported once
            log.exception("%s: %s failed on %s", event.filename, reg.name, group)
            made, failures = [], [Failure(reason=f"the instruction generator {reg.name} "
                                          f"failed on {group}: {type(exc).__name__}: {exc}")]
        counts[group] = {"kept": len(made), "dropped": len(failures)}
        if not made and not failures:  # nothing to sample: say why, nothing silent
            explain = getattr(reg.obj, "skipped_reason", None)
            why = (explain(tools, group, dict(options)) if explain else None) or \
                f"{reg.name} made no {group} sample from {len(tools)} operations"
            counts[group]["skipped"] = why
            log.warning("%s: no %s instructions: %s", event.filename, group, why)
        TOOL_INSTRUCTIONS.labels(group=group, outcome="kept").inc(len(made))
        TOOL_INSTRUCTIONS.labels(group=group, outcome="dropped").inc(len(failures))
        for i, failure in enumerate(failures):
            key = f"{event.spec_id}:{group}:" + content_id(failure.reason,
                                                            failure.raw_output, i)[:16]
            await _fail(rt, event, _ref(reg), teacher.ref, failure, key)
        out += made
        log.info("%s: %s: %d instructions (%d dropped)", event.filename, group, len(made),
                 len(failures))
    outcome["instructions"] = counts
    return out


async def _solve_all(rt: Runtime, event: ApiSpecSubmitted, instructions: list[ToolInstruction],
                     tools: list[ApiTool], teacher: ManagedTeacher, caller: GuardedCaller,
                     solver: Registered, compare: list[Registered],
                     outcome: SpecOutcome) -> list[tuple[ToolInstruction, SolveResult]]:
    cfg = rt.settings.api_annotator
    sem = asyncio.Semaphore(cfg.concurrency)
    results: list[tuple[ToolInstruction, SolveResult]] = []
    done = Counter[str]()

    async def one(ins: ToolInstruction, reg: Registered, publish: bool) -> None:
        options = dict(cfg.solver_options)
        async with sem:
            try:
                result = await reg.obj.solve(ins, tools, teacher=teacher, caller=caller,
                                             options=options)
            except TeacherError as exc:
                # a solver that lets a teacher failure out: this search is unsolved, with
                # the reason; the spec (and its real API calls) is not redone for it
                log.warning("%s: %s search of %s failed: %s", event.filename, reg.name,
                            ins.instruction_id, exc)
                result = SolveResult(method=reg.name, solved=False,
                                     stats={"stop_reason": "teacher_error", "error": str(exc)})
            except Exception as exc:  # a solver's own failure: this search's, not the spec's
                log.exception("%s: %s search of %s failed", event.filename, reg.name,
                              ins.instruction_id)
                result = SolveResult(method=reg.name, solved=False, stats={
                    "stop_reason": "error", "error": f"{type(exc).__name__}: {exc}"})
        results.append((ins, result))
        outcome_label = "solved" if result.solved else "unsolved"
        TOOL_SEARCHES.labels(method=result.method, group=ins.group, outcome=outcome_label).inc()
        TOOL_SEARCH_CALLS.labels(method=result.method, kind="teacher").inc(result.teacher_calls)
        TOOL_SEARCH_CALLS.labels(method=result.method, kind="api").inc(result.api_calls)
        done[f"{result.method} {outcome_label}"] += 1
        if not publish:
            return
        offered = result.tools or [t.openai_tool() for t in tools
                                   if t.name in set(ins.sampled_tools)]
        tid = content_id(event.spec_id, ins.model_dump(mode="json"), reg.name, reg.version,
                         options, teacher.ref.model_dump())[:32]
        stats = dict(result.stats)
        await rt.bus.publish(ToolTrajectory(
            trajectory_id=tid, collection=event.collection, spec_id=event.spec_id,
            group=ins.group, instruction=ins.query, tools=offered,
            messages=result.messages, final_answer=result.final_answer,
            method=result.method, solved=result.solved, technique=_ref(reg),
            teacher=teacher.ref, run_id=event.run_id, instruction_id=ins.instruction_id,
            relevant_apis=ins.relevant_apis, category=ins.category,
            gave_up=result.gave_up and not result.solved,
            reason="" if result.solved else _unsolved_reason(stats),
            teacher_calls=result.teacher_calls, api_calls=result.api_calls, stats=stats))

    jobs = [one(ins, solver, True) for ins in instructions]
    jobs += [one(ins, reg, False) for reg in compare for ins in instructions]
    for start in range(0, len(jobs), 64):  # progress in the log every 64 searches
        await asyncio.gather(*jobs[start:start + 64])
        log.info("%s: %d of %d searches done (%s)", event.filename,
                 min(start + 64, len(jobs)), len(jobs),
                 ", ".join(f"{k}: {n}" for k, n in sorted(done.items())))
    outcome["searches"] = dict(sorted(done.items()))
    return results


def _unsolved_reason(stats: dict) -> str:
    """``give_up``, ``budget``, ... and, for a failed teacher call or a solver that
    raised, the error with it."""
    reason = str(stats.get("stop_reason", "unsolved"))
    if reason in ("teacher_error", "error") and stats.get("error"):
        reason += f": {str(stats['error'])[:500]}"
    return reason


def build_router(rt: Runtime) -> NatsRouter:
    cfg = rt.settings.api_annotator
    # unknown or mis-staged plugins fail here, when the service starts
    filter_reg = _plugin(rt, cfg.filter, "filter") if cfg.filter else None
    generator = _plugin(rt, cfg.instructions, "instructions")
    solver = _plugin(rt, cfg.solver, "solver")
    compare = [_plugin(rt, name, "solver") for name in cfg.compare_solvers
               if name != cfg.solver]
    evaluator = _plugin(rt, cfg.evaluator, "eval") if cfg.evaluator else None
    check = getattr(generator.obj, "check_options", None)
    if check is not None:  # bad instruction options fail here, not on every spec
        try:
            check(dict(cfg.instruction_options))
        except ValueError as exc:
            raise ValueError(f"api_annotator.instruction_options: {exc}") from None
    teacher = rt.teacher()
    router = NatsRouter()

    # one spec at a time per replica: a spec fans out into many teacher and API calls
    @rt.bus.consumer(router, service=SERVICE, subject=API_SPECS_SUBMITTED,
                     model=ApiSpecSubmitted, concurrency=1)
    async def annotate(event: ApiSpecSubmitted, ctx: HandlerContext) -> None:
        """Filter a spec's APIs, generate instructions, annotate them with DFSDT."""
        if event.run_id is None and ctx.run_id:
            event = event.model_copy(update={"run_id": ctx.run_id})
        await annotate_spec(rt, event, teacher=teacher, filter_reg=filter_reg,
                            generator=generator, solver=solver, compare=compare,
                            evaluator=evaluator)

    return router
