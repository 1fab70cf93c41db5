"""The technique plugins and the runtime's teacher wrapper, with the openai teacher talking
to a local server that speaks the OpenAI protocol with scripted replies."""

from __future__ import annotations

import asyncio
import json

import pytest

from syllabus.contracts import (
    ChatMessage,
    ChunkCreated,
    ChunkLineage,
    GenerationParams,
    OutputParseError,
    PluginRef,
    QARecord,
    TeacherError,
    TeacherRef,
    extract_json,
    parse_score,
)
from syllabus.plugins.exporters.standard import StandardExporter
from syllabus.plugins.questions.backtranslation import CURATION_PROMPT, BacktranslationGenerator
from syllabus.plugins.questions.qa_pairs import QAPairsGenerator
from syllabus.plugins.rationales.step_by_step import StepByStep, agreement
from syllabus.plugins.teachers.openai import OpenAITeacherFactory
from syllabus.services.runtime import LocalStore, ManagedTeacher, TeacherSettings

from .openai_server import error, slow, text

PASSAGE = ("A honeybee colony has one queen, thousands of female workers and, in summer, a "
           "few hundred male drones. The queen can lay up to 2,000 eggs a day in early "
           "summer. Workers build the wax comb, feed the larvae and forage for nectar and "
           "pollen. Drones do not sting and do not forage; their only task is to mate.")


def _chunk(text: str = PASSAGE) -> ChunkCreated:
    return ChunkCreated(
        chunk_id="c" * 64, collection="bees", text=text, token_count=90, index=0,
        store_key="chunks/x.json", run_id="r1",
        lineage=ChunkLineage(doc_id="d" * 64, filename="colony.pdf", media_type="application/pdf",
                             pages=[2], section=["The colony"], char_start=0,
                             char_end=len(text), parser=PluginRef(name="pdf:pdf"),
                             chunker=PluginRef(name="structured"), settings_hash="h"))


@pytest.fixture
async def teacher(openai_server, tmp_path):
    settings = TeacherSettings(kind="openai", model="scripted", concurrency=2, timeout=5,
                               max_retries=2, backoff_base=0.05, backoff_max=0.2)
    inner = OpenAITeacherFactory().create({"url": openai_server.url, "model": "scripted"})
    t = ManagedTeacher(inner, settings=settings, store=LocalStore(tmp_path / "store"))
    yield t
    await t.aclose()


PAIRS = {"pairs": [
    {"question": "How many eggs can a honeybee queen lay in a day?",
     "answer": "Up to 2,000 eggs a day in early summer."},
    {"question": "What do worker bees do?",
     "answer": "They build the wax comb, feed the larvae and forage for nectar and pollen."},
    {"question": "What do worker bees do?", "answer": "A repeated question."},
]}


async def test_qa_pairs_tolerates_prose_and_fences_and_keeps_lineage(openai_server, teacher):
    openai_server.script(text("Sure! Here they are:\n```json\n" + json.dumps(PAIRS) + "\n```\nEnjoy."))
    out = await QAPairsGenerator().generate(_chunk(), teacher=teacher,
                                            options={"pairs_per_chunk": 3})
    assert out.failures == []
    assert [r.instruction for r in out.records] == [PAIRS["pairs"][0]["question"],
                                                   PAIRS["pairs"][1]["question"]]
    r = out.records[0]
    assert r.lineage.pages == [2] and r.chunk_id == "c" * 64 and r.teacher.kind == "openai"
    assert r.technique.name == "qa-pairs" and r.prompt_hash
    prompt = openai_server.requests[0].json["messages"][1]["content"]
    assert PASSAGE in prompt and "3 question-and-answer pairs" in prompt
    # the same input gives the same record ids (a rerun adds no duplicates)
    again = await QAPairsGenerator().generate(_chunk(), teacher=teacher,
                                              options={"pairs_per_chunk": 3})
    assert [x.record_id for x in again.records] == [x.record_id for x in out.records]
    assert len(openai_server.requests) == 1  # the rerun came from the cache
    assert teacher.stats.cache_hits == 1


async def test_unparseable_output_is_retried_once_with_the_error_then_recorded(openai_server,
                                                                               teacher):
    openai_server.script(text("I think bees are great."), text(json.dumps(PAIRS)))
    out = await QAPairsGenerator().generate(_chunk(), teacher=teacher, options={})
    assert len(out.records) == 2
    retry = openai_server.requests[1].json["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think bees are great."}
    assert "could not be used" in retry[-1]["content"] and "JSON" in retry[-1]["content"]

    openai_server.script(text("still not JSON"), text('{"pairs": [{"question": "no mark"}]}'))
    out = await QAPairsGenerator().generate(_chunk(PASSAGE + " More."), teacher=teacher,
                                            options={})
    assert out.records == []
    [failure] = out.failures
    assert failure.raw_output == '{"pairs": [{"question": "no mark"}]}'
    assert "after a retry" in failure.reason


@pytest.mark.parametrize("score,k,kept", [(5, 5, True), (4, 5, False), (4, 4, True), (1, 4, False)])
async def test_backtranslation_self_curation_threshold(openai_server, teacher, score, k, kept):
    openai_server.script(
        text("Describe how a honeybee colony divides its work."),
        text(f"The answer is complete and focused.\nIt reads well.\nScore: {score}"))
    out = await BacktranslationGenerator().generate(_chunk(), teacher=teacher,
                                                    options={"min_score": k})
    [record] = out.records
    assert record.instruction == "Describe how a honeybee colony divides its work."
    assert record.response == PASSAGE
    assert record.scores["curation"] == score
    [decision] = record.decisions
    assert decision.kept is kept and decision.threshold == k
    assert "The answer is complete and focused." in decision.details["reasoning"]
    assert record.rejected is (not kept)
    assert record.system == "Answer with knowledge from web search."
    curation = openai_server.requests[1].json["messages"][0]["content"]
    assert curation.startswith("Below is an instruction from an user and a candidate answer.")
    assert 'write "Score: <rating>" in the last line.' in curation
    assert curation.endswith(f"Describe how a honeybee colony divides its work.\n{PASSAGE}")
    assert CURATION_PROMPT.count("\n") == 10


def test_score_parsing():
    assert parse_score("Good.\nScore: 5") == (5, "Good.")
    assert parse_score("Reasoning here.\n\n**Score: 3**\n") == (3, "Reasoning here.\n**")
    assert parse_score("Score: 2 is wrong... no.\nFinal.\nScore: 4")[0] == 4
    for bad in ("no score at all", "Score: 9", "Score: 4.5"):
        with pytest.raises(OutputParseError):
            parse_score(bad)
    assert extract_json('prefix {"a": [1, {"b": "}"}]} suffix') == {"a": [1, {"b": "}"}]}
    with pytest.raises(OutputParseError):
        extract_json("nothing here")
    # what Gemma 3 270M wrote under llama.cpp's JSON grammar: a raw newline in a string
    assert extract_json('{ "question": "What do bees\nstore?", "answer": "Nectar." }') == {
        "question": "What do bees\nstore?", "answer": "Nectar."}


def _record(answer: str, question: str = "How many eggs can a queen lay in a day?") -> QARecord:
    return QARecord(record_id="r" * 64, collection="bees", instruction=question,
                    response=answer, chunk_id="c" * 64,
                    technique=PluginRef(name="qa-pairs"), teacher=TeacherRef(kind="x", model="y"))


async def test_step_by_step_keeps_only_agreeing_rationales(openai_server, teacher):
    openai_server.script(
        text('The context says "The queen can lay up to 2,000 eggs a day".\nSo the answer is up to 2,000 eggs.'),
        text("The context mentions drones.\nSo the answer is 300 drones."),
        text("no marker here"), text("still no marker"))
    options = {"examples": [{"context": "C1", "question": "Q1?", "rationale": "R1.",
                             "answer": "A1"}]}
    ok = (await StepByStep().rationalize(_record("Up to 2,000 eggs a day in early summer."),
                                         context=PASSAGE, teacher=teacher, options=options)).records[0]
    assert ok.rationale == 'The context says "The queen can lay up to 2,000 eggs a day".'
    assert ok.decisions[-1].kept and "rationale kept" in ok.decisions[-1].reason
    prompt = openai_server.requests[0].json["messages"][1]["content"]
    assert "Context: C1\nQuestion: Q1?\nAnswer: R1. So the answer is A1." in prompt
    assert prompt.endswith(f"Context: {PASSAGE}\nQuestion: How many eggs can a queen lay in a day?\nAnswer:")

    bad = (await StepByStep().rationalize(_record("Up to 2,000 eggs a day.", "How many eggs "
                                                  "does a queen lay daily?"), context=PASSAGE,
                                          teacher=teacher, options=options)).records[0]
    assert bad.rationale is None
    assert "rationale dropped" in bad.decisions[-1].reason and "300 drones" in bad.decisions[-1].reason
    assert bad.decisions[-1].kept  # the record stays; only the rationale went
    assert bad.scores["rationale_agreement"] < 0.5

    out = await StepByStep().rationalize(_record("x"), context=PASSAGE + " ", teacher=teacher,
                                         options={"require_rationale": True})
    assert out.records[0].rejected and out.failures[0].raw_output == "still no marker"


def test_agreement():
    assert agreement("up to 2,000 eggs", "Up to 2,000 eggs a day in early summer.") == 1.0
    assert agreement("unknown", "unknown") == 0.0
    assert agreement("300 drones", "Up to 2,000 eggs a day.") == 0.0
    assert 0.5 < agreement("the queen lays 2,000 eggs daily", "The queen lays 2,000 eggs a day") < 1


async def test_managed_teacher_retries_caches_and_bounds_concurrency(openai_server, tmp_path):
    settings = TeacherSettings(kind="openai", model="m", concurrency=2, timeout=0.5,
                               max_retries=2, backoff_base=0.01, backoff_max=0.05)
    inner = OpenAITeacherFactory().create({"url": openai_server.url, "model": "m"})
    t = ManagedTeacher(inner, settings=settings, store=LocalStore(tmp_path / "s"))
    msgs = [ChatMessage(role="user", content="hi")]
    p = GenerationParams()
    openai_server.script(error(429, retry_after=0.01), error(503), text("finally"))
    assert (await t.complete(msgs, params=p)).text == "finally"
    assert t.stats.retries == 2 and t.stats.calls == 1
    assert (await t.complete(msgs, params=p)).cached  # same prompt: from the store
    assert len(openai_server.requests) == 3

    openai_server.script(error(400, "bad request: model not found"))
    with pytest.raises(TeacherError, match="model not found"):
        await t.complete([ChatMessage(role="user", content="other")], params=p)
    assert len(openai_server.requests) == 4  # not retried

    openai_server.max_concurrency = 10
    openai_server.latency = 0.2
    openai_server.reset_counters()
    await asyncio.gather(*(t.complete([ChatMessage(role="user", content=f"n{i}")], params=p)
                           for i in range(6)))
    assert openai_server.peak_active == 2  # the teacher's concurrency bound

    # a reply slower than the time-out is retried
    openai_server.latency = 0
    openai_server.script(slow(2.0), text("fast enough"))
    assert (await t.complete([ChatMessage(role="user", content="slow")], params=p)).text == \
        "fast enough"
    await t.aclose()


def test_exporter_formats_carry_lineage():
    rec = _record("Up to 2,000 eggs a day.").model_copy(update={
        "rationale": "The context says so.", "system": "Answer with knowledge from web search.",
        "scores": {"curation": 5.0}})
    exp = StandardExporter()
    rows = {fmt: exp.rows(rec, fmt) for fmt in exp.formats}
    [chat] = rows["openai"]
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"]
    assert chat["metadata"]["chunk_id"] == "c" * 64 and chat["metadata"]["scores"] == {"curation": 5.0}
    assert rows["alpaca"][0]["output"] == "Up to 2,000 eggs a day."
    assert rows["sharegpt"][0]["conversations"][1]["from"] == "human"
    predict, explain = rows["step-by-step"]
    assert predict["input"].startswith("predict: ") and predict["output"] == rec.response
    assert explain["input"].startswith("explain: ") and explain["output"] == rec.rationale
    # with the chunk, both tasks see the question and the chunk (Hsieh et al.: one input)
    predict, explain = exp.rows(rec, "step-by-step", context="A queen lays 2,000 eggs.")
    for row, task in ((predict, "predict"), (explain, "explain")):
        assert row["input"] == f"{task}: {rec.instruction}\n\ncontext: A queen lays 2,000 eggs."
    with pytest.raises(ValueError, match="unknown format"):
        exp.rows(rec, "csv")
