"""The bus semantics every service gets from Bus.consumer, on a real nats-server:
redelivery with back-off, the dead-letter path, Nats-Msg-Id de-duplication."""

from __future__ import annotations

import asyncio

import pytest
from faststream.nats import NatsRouter
from nats.js.api import AckPolicy, ConsumerConfig

from syllabus.contracts import (
    DOCUMENTS_SUBMITTED,
    HEADER_MSG_ID,
    HEADER_RUN_ID,
    STREAM_NAME,
    DeadLetter,
    DocumentSubmitted,
    dlq_subject,
)
from syllabus.services.runtime import Runtime, replay


def _doc(n: int = 1) -> DocumentSubmitted:
    return DocumentSubmitted(doc_id=f"{n:064x}", collection="bus-test", filename=f"d{n}.txt",
                             store_key=f"documents/{n:064x}", size_bytes=3, run_id="run-1")


async def _runtime(settings, handler, *, service="probe") -> Runtime:
    rt = Runtime.create(settings)
    router = NatsRouter()
    rt.bus.consumer(router, service=service, subject=DOCUMENTS_SUBMITTED)(handler)
    rt.bus.broker.include_router(router)
    await rt.bus.start()
    return rt


async def _wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def _dead_letters(rt: Runtime, service: str = "probe") -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(m.data) for m in await replay(rt.bus, dlq_subject(service))]


async def test_failed_handler_is_redelivered_then_acked(settings):
    calls: list[int] = []

    async def flaky(doc: DocumentSubmitted, ctx) -> None:
        calls.append(ctx.deliveries)
        if ctx.deliveries < 3:
            raise RuntimeError("transient")

    rt = await _runtime(settings, flaky)
    try:
        await rt.bus.publish(_doc())

        async def acked() -> bool:
            info = await rt.bus.js.consumer_info(STREAM_NAME, "probe")
            return info.num_ack_pending == 0 and info.num_pending == 0 and len(calls) >= 3

        await _wait_for(acked)
        assert calls == [1, 2, 3]
        assert await _dead_letters(rt) == []
    finally:
        await rt.bus.close()


async def test_exhausted_message_goes_to_dead_letter_with_payload_and_reason(settings):
    async def broken(doc: DocumentSubmitted, ctx) -> None:
        raise ValueError(f"cannot handle {doc.filename}")

    rt = await _runtime(settings, broken)
    try:
        event = _doc(7)
        await rt.bus.publish(event)

        async def dead() -> bool:
            return bool(await _dead_letters(rt))

        await _wait_for(dead)
        [letter] = await _dead_letters(rt)
        assert letter.service == "probe"
        assert letter.original_subject == DOCUMENTS_SUBMITTED
        assert letter.deliveries == settings.bus.max_deliver
        assert "ValueError: cannot handle d7.txt" in letter.reason
        assert DocumentSubmitted.model_validate_json(letter.payload) == event
        assert letter.headers[HEADER_RUN_ID] == "run-1"
        assert letter.headers[HEADER_MSG_ID] == event.dedup_id()
        info = await rt.bus.js.consumer_info(STREAM_NAME, "probe")
        assert info.num_ack_pending == 0  # dead-lettered and acked, not left hanging
    finally:
        await rt.bus.close()


async def test_invalid_payload_is_dead_lettered_without_calling_handler(settings):
    called = []

    async def handler(doc, ctx) -> None:
        called.append(doc)

    rt = await _runtime(settings, handler)
    try:
        await rt.bus.js.publish(DOCUMENTS_SUBMITTED, b'{"doc_id": 5, "nonsense": true}')
        await rt.bus.js.publish(DOCUMENTS_SUBMITTED, b"\xff\xfe not json")

        async def two() -> bool:
            return len(await _dead_letters(rt)) == 2

        await _wait_for(two)
        letters = await _dead_letters(rt)
        assert called == []
        assert all("not a valid DocumentSubmitted" in d.reason for d in letters)
        assert {d.payload for d in letters} == {b'{"doc_id": 5, "nonsense": true}',
                                                b"\xff\xfe not json"}
    finally:
        await rt.bus.close()


async def test_message_whose_handler_keeps_crashing_is_dead_lettered(settings):
    """Deliveries that were never acked (a replica died mid-message) count too: once they
    exceed max_deliver the message is dead-lettered instead of handled again."""
    seen = []

    async def handler(doc, ctx) -> None:
        seen.append(ctx.deliveries)

    # simulate replicas that crash: take the message from the durable and never ack it
    rt0 = Runtime.create(settings)
    await rt0.bus.start()
    await rt0.bus.publish(_doc(3))
    cfg = ConsumerConfig(durable_name="probe", ack_policy=AckPolicy.EXPLICIT, ack_wait=0.5,
                         max_deliver=settings.bus.max_deliver + 1,
                         filter_subject=DOCUMENTS_SUBMITTED)
    psub = await rt0.bus.js.pull_subscribe(DOCUMENTS_SUBMITTED, durable="probe",
                                           stream=STREAM_NAME, config=cfg)
    for _ in range(settings.bus.max_deliver):
        [msg] = await psub.fetch(1, timeout=5)
        await asyncio.sleep(0.7)  # no ack: the server redelivers after ack_wait
    del msg
    await rt0.bus.close()

    rt = await _runtime(settings, handler)
    try:
        async def dead() -> bool:
            return bool(await _dead_letters(rt))

        await _wait_for(dead)
        [letter] = await _dead_letters(rt)
        assert seen == []
        assert letter.deliveries == settings.bus.max_deliver + 1
        assert "without an ack" in letter.reason
    finally:
        await rt.bus.close()


async def test_same_event_published_twice_is_stored_once(settings):
    rt = Runtime.create(settings)
    await rt.bus.start()
    try:
        first = await rt.bus.publish(_doc(9))
        second = await rt.bus.publish(_doc(9))
        assert not first.duplicate
        assert second.duplicate
        assert len(await replay(rt.bus, DOCUMENTS_SUBMITTED)) == 1
    finally:
        await rt.bus.close()


async def test_event_on_the_wrong_subject_is_refused(settings):
    rt = Runtime.create(settings)
    await rt.bus.start()
    try:
        with pytest.raises(TypeError, match="cannot travel on syllabus.chunks.created"):
            await rt.bus.publish(_doc(), subject="syllabus.chunks.created")
    finally:
        await rt.bus.close()
