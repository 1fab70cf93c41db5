"""The sycophancy-filter service on a real nats-server: every record ends up accepted or
rejected, with every decision kept; the llm-judge filter against a local OpenAI-protocol
server with scripted replies."""

from __future__ import annotations

import json

import pytest

from syllabus.contracts import (
    QA_RATIONALIZED,
    RECORDS_ACCEPTED,
    RECORDS_REJECTED,
    ChunkCreated,
    ChunkLineage,
    PluginRef,
    QARecord,
    TeacherRef,
)
from syllabus.plugins.filters.llm_judge import LLMJudge
from syllabus.services.cli._run import wait_drained
from syllabus.services.runtime import Runtime, TeacherSettings, replay
from syllabus.services.sycophancy_filter import build_router

from .openai_server import text

CONTEXT = ("A honeybee queen can lay up to 2,000 eggs a day in early summer. Worker bees "
           "live about six weeks in summer and build the wax comb.")


def _record(i: int, instruction: str, response: str) -> QARecord:
    return QARecord(record_id=f"{i:064x}", collection="flt", instruction=instruction,
                    response=response, chunk_id="c" * 64,
                    technique=PluginRef(name="qa-pairs"), teacher=TeacherRef(kind="t", model="m"),
                    run_id="run-1")


def judge_responder(request: dict) -> str:
    prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
    response = prompt.split("Response:\n", 1)[1]
    if "20,000" in response:
        return json.dumps({"score": 1, "reasoning": "It contradicts the source (2,000)."})
    return "Here you go: " + json.dumps({"score": 5, "reasoning": "Correct and faithful."})


async def test_llm_judge_scores_against_the_threshold(openai_server, tmp_path):
    from syllabus.plugins.teachers.openai import OpenAITeacherFactory
    from syllabus.services.runtime import LocalStore, ManagedTeacher

    teacher = ManagedTeacher(
        OpenAITeacherFactory().create({"url": openai_server.url, "model": "judge"}),
        settings=TeacherSettings(kind="openai", model="judge"), store=LocalStore(tmp_path))
    openai_server.script(text('{"score": 3, "reasoning": "Vague."}'), text("no json"),
                         text("still none"))
    rec = _record(1, "How many eggs can a queen lay?", "Up to 2,000 a day.")
    kept = await LLMJudge().judge(rec, context=CONTEXT, teacher=teacher,
                                  options={"threshold": 3})
    assert kept.kept and kept.score == 3 and "Vague." in kept.reason
    prompt = openai_server.requests[0].json["messages"][0]["content"]
    assert CONTEXT in prompt and "Up to 2,000 a day." in prompt
    failed = await LLMJudge().judge(_record(2, "Q?", "A."), context=CONTEXT, teacher=teacher,
                                    options={})
    assert not failed.kept and failed.details["raw_output"] == "still none"
    await teacher.aclose()


def test_educational_value_with_the_extractive_teacher_fails_at_start(settings):
    settings.teacher.kind = "extractive"
    settings.filters.techniques = ["heuristic-quality", "educational-value"]
    rt = Runtime.create(settings)
    with pytest.raises(ValueError, match="extractive teacher refuses that task"):
        build_router(rt)


async def test_filter_service_accepts_and_rejects_with_reasons(settings, openai_server):
    openai_server.default = judge_responder
    settings.teacher = TeacherSettings(kind="openai", url=openai_server.url, model="judge",
                                       max_retries=0)
    settings.filters.techniques = ["llm-judge"]
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    try:
        chunk = ChunkCreated(
            chunk_id="c" * 64, collection="flt", text=CONTEXT, token_count=30, index=0,
            store_key="chunks/" + "c" * 64 + ".json",
            lineage=ChunkLineage(doc_id="d" * 64, filename="b.md", media_type="text/markdown",
                                 char_start=0, char_end=10, parser=PluginRef(name="p"),
                                 chunker=PluginRef(name="c"), settings_hash="h"))
        rt.store.put(chunk.store_key, chunk.model_dump_json().encode())
        good = _record(1, "How many eggs can a queen lay in a day?", "Up to 2,000 eggs a day.")
        bad = _record(2, "How many eggs can a queen lay in a day?", "About 20,000 eggs a day.")
        for r in (good, bad):
            await rt.bus.publish(r, subject=QA_RATIONALIZED)
        await wait_drained(rt, timeout=60)
        [accepted] = [QARecord.model_validate_json(m.data)
                      for m in await replay(rt.bus, RECORDS_ACCEPTED)]
        [rejected] = [QARecord.model_validate_json(m.data)
                      for m in await replay(rt.bus, RECORDS_REJECTED)]
        assert accepted.record_id == good.record_id and accepted.scores["llm-judge"] == 5
        assert rejected.record_id == bad.record_id
        [decision] = rejected.decisions
        assert decision.filter == "llm-judge" and not decision.kept and decision.score == 1
        assert "contradicts the source" in decision.reason
    finally:
        await rt.close()
