"""question-gen and rationale on a real nats-server, with the openai teacher talking to a
local OpenAI-protocol server: the flow, rejections and failures on the bus, and a
question-gen worker killed mid-run whose restart loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from syllabus.contracts import (
    GENERATION_FAILED,
    QA_GENERATED,
    QA_RATIONALIZED,
    RECORDS_REJECTED,
    ChunkCreated,
    ChunkLineage,
    GenerationFailed,
    PluginRef,
    QARecord,
)
from syllabus.services.cli._run import wait_drained
from syllabus.services.question_gen import build_router as question_router
from syllabus.services.rationale import build_router as rationale_router
from syllabus.services.runtime import Runtime, TeacherSettings, free_port, replay

SENTENCES = [
    "Propolis is a resin that bees collect from tree buds.",
    "A worker bee lives about six weeks in summer.",
    "Drones are male bees that do not sting.",
    "The queen mates in flight during her first weeks.",
    "Nectar becomes honey when bees evaporate most of its water.",
    "Beeswax is produced by glands on the underside of the worker abdomen.",
]


def responder(request: dict) -> str:
    """A deterministic stand-in for an LLM: answers each technique's prompt from its text."""
    # the first user message is the technique's prompt (a retry appends more after it)
    prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
    if "question-and-answer pairs" in prompt:
        passage = prompt.split('"""')[1].strip()
        if "GARBAGE" in passage:
            return "I would rather talk about wasps."
        first = passage.split(". ")[0].rstrip(".")
        subject = " ".join(first.split()[:2])
        return json.dumps({"pairs": [
            {"question": f"What does the text say about {subject.lower()}?", "answer": first + "."},
            {"question": f"Which fact about {subject.lower()} is given?", "answer": first + "."},
        ]})
    if "Below is a response written by an AI assistant" in prompt:
        return "Explain what this text says about bees."
    if "Below is an instruction from an user" in prompt:
        return "Clear and complete.\nScore: 3"
    if prompt.endswith("\nAnswer:"):  # step-by-step: answer the last (target) example
        context = prompt.rsplit("Context: ", 1)[-1].split("\nQuestion: ")[0]
        return f'The context says "{context}".\nSo the answer is {context.split(". ")[0].rstrip(".")}.'
    return "unexpected prompt"


def _chunk(i: int, text: str, collection: str = "gen") -> ChunkCreated:
    cid = f"{i:064x}"
    return ChunkCreated(
        chunk_id=cid, collection=collection, text=text, token_count=60, index=i,
        store_key=f"chunks/{cid}.json", run_id="run-1",
        lineage=ChunkLineage(doc_id="d" * 64, filename="bees.md", media_type="text/markdown",
                             section=["Bees"], char_start=0, char_end=len(text),
                             parser=PluginRef(name="markdown"), chunker=PluginRef(name="structured"),
                             settings_hash="h"))


def _teacher(url: str, **kw) -> TeacherSettings:
    return TeacherSettings(kind="openai", url=url, model="scripted", concurrency=4, timeout=10,
                           max_retries=2, backoff_base=0.05, backoff_max=0.2, **kw)


async def _events(rt: Runtime, subject: str, model):
    return [model.model_validate_json(m.data) for m in await replay(rt.bus, subject)]


async def test_chunks_flow_through_question_gen_and_rationale(settings, openai_server):
    openai_server.default = responder
    settings.teacher = _teacher(openai_server.url)
    settings.question_gen.techniques = ["qa-pairs", "backtranslation"]
    settings.question_gen.options = {"backtranslation": {"min_score": 4, "min_chunk_tokens": 8}}
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(question_router(rt))
    rt.bus.broker.include_router(rationale_router(rt))
    await rt.bus.start()
    try:
        texts = [" ".join(SENTENCES[i:i + 3]) for i in range(3)] + ["GARBAGE " + SENTENCES[0]]
        for i, text in enumerate(texts):
            chunk = _chunk(i, text)
            rt.store.put(chunk.store_key, chunk.model_dump_json().encode())
            await rt.bus.publish(chunk)
        await wait_drained(rt, timeout=60)

        generated = await _events(rt, QA_GENERATED, QARecord)
        rationalized = await _events(rt, QA_RATIONALIZED, QARecord)
        rejected = await _events(rt, RECORDS_REJECTED, QARecord)
        failed = await _events(rt, GENERATION_FAILED, GenerationFailed)
        # qa-pairs: 2 per good chunk; the garbage chunk fails after one retry
        assert Counter(r.technique.name for r in generated) == {"qa-pairs": 6}
        assert len({r.record_id for r in generated}) == 6
        assert [(f.stage, f.chunk_id) for f in failed] == [("question-gen", _chunk(3, "").chunk_id)]
        assert failed[0].raw_output == "I would rather talk about wasps."
        # backtranslation: every pair scored 3 < k=4, so all are rejected, with the reason
        assert len(rejected) == 4 and all(r.technique.name == "backtranslation" for r in rejected)
        assert all(r.decisions[0].score == 3 and not r.decisions[0].kept for r in rejected)
        # rationale: every generated record comes through, with an agreeing rationale
        assert {r.record_id for r in rationalized} == {r.record_id for r in generated}
        assert all(r.rationale and r.rationale.startswith("The context says") for r in rationalized)
        assert all(r.lineage.filename == "bees.md" and r.teacher.model == "scripted"
                   for r in rationalized)
    finally:
        await rt.close()


async def test_rationale_stage_forwards_unchanged_when_no_technique(settings, openai_server):
    openai_server.default = responder
    settings.teacher = _teacher(openai_server.url)
    settings.rationale.technique = None
    settings.question_gen.techniques = ["qa-pairs"]
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(question_router(rt))
    rt.bus.broker.include_router(rationale_router(rt))
    await rt.bus.start()
    try:
        chunk = _chunk(1, " ".join(SENTENCES[:2]))
        rt.store.put(chunk.store_key, chunk.model_dump_json().encode())
        await rt.bus.publish(chunk)
        await wait_drained(rt, timeout=60)
        generated = await _events(rt, QA_GENERATED, QARecord)
        assert len(generated) == 2
        assert await _events(rt, QA_RATIONALIZED, QARecord) == generated
    finally:
        await rt.close()


def _serve(env: dict, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "syllabus"), "serve",
                             "question-gen", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def test_question_gen_worker_killed_mid_run_loses_and_duplicates_nothing(
        settings, openai_server, tmp_path):
    openai_server.default = responder
    openai_server.latency = 0.15
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    env.update({
        "SYLLABUS_NATS__URL": settings.nats.url,
        "SYLLABUS_STORE__KIND": "local",
        "SYLLABUS_STORE__PATH": str(settings.store.path),
        "SYLLABUS_TEACHER__KIND": "openai",
        "SYLLABUS_TEACHER__URL": openai_server.url,
        "SYLLABUS_TEACHER__MODEL": "scripted",
        "SYLLABUS_QUESTION_GEN__TECHNIQUES": '["qa-pairs"]',
        "SYLLABUS_BUS__ACK_WAIT": "2",
        "SYLLABUS_BUS__CONCURRENCY": "2",
        "SYLLABUS_TEACHER__CONCURRENCY": "2",
        "SYLLABUS_BUS__BATCH_SIZE": "1",
    })
    rt = Runtime.create(settings)
    await rt.bus.start()
    chunks = [_chunk(i, SENTENCES[i % 6] + f" Fact number {i} about the hive.") for i in range(16)]
    for c in chunks:
        rt.store.put(c.store_key, c.model_dump_json().encode())
        await rt.bus.publish(c)
    log = tmp_path / "worker.log"
    worker = _serve(env, free_port(), log)
    try:
        deadline = time.monotonic() + 60
        while len(await replay(rt.bus, QA_GENERATED)) < 6:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGKILL)  # a crash: no graceful shutdown, no acks
        worker.wait(timeout=10)
        before = len(await replay(rt.bus, QA_GENERATED))
        assert before < 2 * len(chunks)  # it really died mid-run

        worker = _serve(env, free_port(), log)
        await wait_drained(rt, timeout=120)
    finally:
        worker.terminate()
        worker.wait(timeout=20)

    records = [QARecord.model_validate_json(m.data) for m in await replay(rt.bus, QA_GENERATED)]
    per_chunk = Counter(r.chunk_id for r in records)
    assert per_chunk == {c.chunk_id: 2 for c in chunks}  # nothing lost
    assert len({r.record_id for r in records}) == len(records) == 32  # nothing duplicated
    assert await replay(rt.bus, "syllabus.dlq.>") == []
    # the restarted worker reused the cached teacher replies: at most the calls in flight
    # at the crash were made twice
    assert len(openai_server.requests) <= len(chunks) + 2
    await rt.close()
