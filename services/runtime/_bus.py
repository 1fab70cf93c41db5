"""The bus: one FastStream ``NatsBroker`` over the JetStream stream ``SYLLABUS``.

``Bus.consumer`` is the only way a service subscribes. It gives every handler the same
delivery semantics:

* a durable pull consumer (replicas of a service share it);
* the payload validated against the subject's contract; a message that does not decode or
  validate goes straight to ``syllabus.dlq.<service>`` with the reason;
* ``AckPolicy.NACK_ON_ERROR``: the message is acked only after the handler returned,
  that is after its output was stored and published; on an exception it is nacked with a
  back-off delay, and on the last allowed delivery it is dead-lettered instead; a
  ``PermanentError`` (the same message would fail the same way) is dead-lettered at
  once, without retries;
* a message redelivered more than ``max_deliver`` times because its handler crashed the
  process or stalled is dead-lettered before the handler runs again (the server's own
  ``max_deliver`` is one above ours, so it never silently stops a message first);
* the ack deadline is kept alive (``in_progress``) while a handler works.

``Bus.publish`` sets ``Nats-Msg-Id`` from the event's content-derived id, so JetStream
drops a second publish of the same thing within the duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsRouter, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.prometheus import NatsPrometheusMiddleware
from nats.js.api import RetentionPolicy, StorageType
from nats.js.errors import BadRequestError
from pydantic import ValidationError

from syllabus.contracts import (
    HEADER_COLLECTION,
    HEADER_MSG_ID,
    HEADER_RUN_ID,
    STREAM_NAME,
    STREAM_SUBJECTS,
    SUBJECT_MODELS,
    DeadLetter,
    Event,
    PermanentError,
    dlq_subject,
)

from ._logging import log_context
from ._metrics import DEAD_LETTERS, HANDLER_FAILURES, HANDLER_SECONDS, REGISTRY
from ._settings import BusSettings, NatsSettings, Settings

__all__ = ["Bus", "HandlerContext", "make_stream", "replay", "stream_position"]

log = logging.getLogger("syllabus.bus")

E = TypeVar("E", bound=Event)
Handler = Callable[[E, "HandlerContext"], Awaitable[None]]


class _FetchTimeoutFilter(logging.Filter):
    """Drops one known-harmless traceback. nats-py 2.16's ``fetch`` can raise the builtin
    ``TimeoutError`` when its deadline runs out, while FastStream 0.7's pull loop only
    suppresses ``nats.errors.TimeoutError``; FastStream's supervisor then logs the
    escaped timeout as an error and restarts the (idle) fetch loop. Nothing is lost."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (type(exc) is TimeoutError and "retrying" in record.getMessage())


_faststream_log = logging.getLogger("syllabus.faststream")
_faststream_log.addFilter(_FetchTimeoutFilter())


def make_stream(nats: NatsSettings) -> JStream:
    """The file-backed, limits-retention stream that is the pipeline's durable log."""
    return JStream(
        name=STREAM_NAME,
        subjects=list(STREAM_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=nats.duplicate_window,
        max_age=nats.max_age or None,
        max_bytes=nats.max_bytes if nats.max_bytes > 0 else None,
        # Bus.start declares it with the whole ``syllabus.>`` space; FastStream's own
        # declaration would add each subscriber's subject, which overlaps that.
        declare=False,
    )


@dataclass
class HandlerContext:
    """What a handler knows about the message it handles."""

    service: str
    subject: str
    headers: dict[str, str]
    deliveries: int
    stream_sequence: int | None
    bus: Bus

    @property
    def run_id(self) -> str | None:
        return self.headers.get(HEADER_RUN_ID)


class Bus:
    def __init__(self, settings: Settings, *, client_name: str = "syllabus") -> None:
        self.settings = settings
        self.bus_settings: BusSettings = settings.bus
        self.stream = make_stream(settings.nats)
        n = settings.nats
        auth: dict[str, Any] = {}
        if n.user:
            auth["user"] = n.user
        if n.password:
            auth["password"] = n.password.get_secret_value()
        if n.token:
            auth["token"] = n.token.get_secret_value()
        if n.creds_file:
            auth["user_credentials"] = str(n.creds_file)
        self.broker = NatsBroker(
            servers=n.url,
            name=client_name,
            connect_timeout=n.connect_timeout,
            middlewares=[NatsPrometheusMiddleware(registry=REGISTRY, app_name="syllabus")],
            graceful_timeout=30.0,
            logger=_faststream_log,
            **auth,
        )

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, declare the stream, then start the subscribers (in that order: a durable
        consumer can only be created on a stream that exists)."""
        await self.broker.connect()
        await self._declare_stream()
        await self.broker.start()

    async def _declare_stream(self) -> None:
        cfg = self.stream.config
        cfg.subjects = list(STREAM_SUBJECTS)
        try:
            await self.js.add_stream(config=cfg)
        except BadRequestError as exc:
            if "different configuration" not in (exc.description or ""):
                raise
            await self.js.update_stream(config=cfg)

    async def close(self) -> None:
        await self.broker.stop()

    @property
    def nc(self):
        return self.broker.config.connection_state.connection

    @property
    def js(self):
        return self.broker.config.connection_state.stream

    async def ping(self) -> bool:
        try:
            nc = self.nc
            if not nc.is_connected:
                return False
            await nc.flush(timeout=2)
            await self.js.stream_info(STREAM_NAME)
            return True
        except Exception:
            return False

    # --- publishing --------------------------------------------------------------------

    async def publish(self, event: Event, *, subject: str | None = None,
                      headers: dict[str, str] | None = None) -> Any:
        """Publish ``event`` on its subject with ``Nats-Msg-Id`` = its content id.

        Returns JetStream's ``PubAck``; ``ack.duplicate`` is true when the server had
        already stored a message with that id."""
        subject = subject or event.subject
        expected = SUBJECT_MODELS.get(subject)
        if expected is not None and not isinstance(event, expected):
            raise TypeError(f"{type(event).__name__} cannot travel on {subject} "
                            f"(expects {expected.__name__})")
        hdrs = dict(headers or {})
        # one record may travel on several subjects (qa.generated, then qa.rationalized...):
        # each subject gets its own message id
        hdrs[HEADER_MSG_ID] = (event.dedup_id() if subject == event.subject
                               else f"{subject}|{event.dedup_id()}")
        run_id = getattr(event, "run_id", None)
        if run_id:
            hdrs.setdefault(HEADER_RUN_ID, run_id)
        collection = getattr(event, "collection", None)
        if collection:
            hdrs.setdefault(HEADER_COLLECTION, collection)
        return await self._publish_raw(event.model_dump_json().encode(), subject, hdrs)

    async def _publish_raw(self, payload: bytes, subject: str, headers: dict[str, str]) -> Any:
        return await self.broker.publish(payload, subject, headers=headers, stream=STREAM_NAME,
                                         timeout=10.0)

    async def dead_letter(self, *, service: str, subject: str, payload: bytes,
                          headers: dict[str, str], reason: str, deliveries: int,
                          stream_sequence: int | None, cause: str) -> None:
        letter = DeadLetter.of(service=service, subject=subject, payload=payload,
                               headers=headers, reason=reason, deliveries=deliveries,
                               stream_sequence=stream_sequence)
        hdrs = {HEADER_MSG_ID: letter.dedup_id()}
        for h in (HEADER_RUN_ID, HEADER_COLLECTION):
            if h in headers:
                hdrs[h] = headers[h]
        await self._publish_raw(letter.model_dump_json().encode(), dlq_subject(service), hdrs)
        DEAD_LETTERS.labels(service=service, cause=cause).inc()
        log.error("dead-lettered %s message #%s after %d deliveries: %s", subject,
                  stream_sequence, deliveries, reason)

    # --- consuming ---------------------------------------------------------------------

    def consumer(self, router: NatsRouter | NatsBroker, *, service: str, subject: str,
                 durable: str | None = None, model: type[E] | None = None,
                 concurrency: int | None = None) -> Callable[[Handler[E]], Handler[E]]:
        """Register ``handler(event, ctx)`` on ``subject`` as a durable pull consumer."""
        model = model or SUBJECT_MODELS.get(subject)  # type: ignore[assignment]
        if model is None:
            raise ValueError(f"no contract model for subject {subject!r}; pass model=")
        durable = durable or service
        if "." in durable or " " in durable:
            raise ValueError(f"invalid durable consumer name {durable!r}")
        bs = self.bus_settings
        workers = concurrency or bs.concurrency

        def decorator(handler: Handler[E]) -> Handler[E]:
            async def _on_message(message: NatsMessage) -> None:
                await self._handle(message, handler=handler, model=model, service=service,
                                   subject=subject)

            _on_message.__name__ = f"{service}_{handler.__name__}"
            _on_message.__doc__ = handler.__doc__
            router.subscriber(
                subject,
                stream=self.stream,
                durable=durable,
                pull_sub=PullSub(batch_size=bs.batch_size, timeout=1.0),
                config=ConsumerConfig(
                    durable_name=durable,
                    ack_wait=bs.ack_wait,
                    max_deliver=bs.max_deliver + 1,
                    max_ack_pending=max(64, workers * bs.batch_size * 4),
                ),
                ack_policy=AckPolicy.NACK_ON_ERROR,
                max_workers=workers,
                title=f"{service}:{subject}",
                description=handler.__doc__,
            )(_on_message)
            return handler

        return decorator

    async def _handle(self, message: Any, *, handler: Handler[E], model: type[E],
                      service: str, subject: str) -> None:
        raw = message.raw_message
        headers = {k: v for k, v in (raw.headers or {}).items()}
        meta = raw.metadata
        deliveries = int(meta.num_delivered)
        seq = int(meta.sequence.stream)
        max_deliver = self.bus_settings.max_deliver
        dl = {"service": service, "subject": raw.subject or subject, "payload": raw.data,
              "headers": headers, "deliveries": deliveries, "stream_sequence": seq}

        if deliveries > max_deliver:
            await self.dead_letter(**dl, cause="exhausted",
                                   reason=f"delivered {deliveries} times without an ack "
                                          f"(the handler crashed or timed out); max_deliver="
                                          f"{max_deliver}")
            return
        try:
            event = model.model_validate_json(raw.data)
        except ValidationError as exc:
            await self.dead_letter(**dl, cause="invalid",
                                   reason=f"payload is not a valid {model.__name__}: "
                                          f"{_short_errors(exc)}")
            return

        ctx = HandlerContext(service=service, subject=dl["subject"], headers=headers,
                             deliveries=deliveries, stream_sequence=seq, bus=self)
        keepalive = asyncio.create_task(self._keep_alive(message))
        started = time.perf_counter()
        try:
            with log_context(service=service, collection=getattr(event, "collection", None),
                             run_id=headers.get(HEADER_RUN_ID),
                             record_id=headers.get(HEADER_MSG_ID)):
                await handler(event, ctx)
        except Exception as exc:
            HANDLER_FAILURES.labels(service=service, subject=subject,
                                    error=type(exc).__name__).inc()
            if isinstance(exc, PermanentError):  # would fail the same way again
                await self.dead_letter(**dl, cause="permanent",
                                       reason=f"{type(exc).__name__}: {exc} (not retried: "
                                              "the same message fails the same way)")
                return
            if deliveries >= max_deliver:
                await self.dead_letter(**dl, cause="failed",
                                       reason=f"{type(exc).__name__}: {exc} (failed on all "
                                              f"{deliveries} deliveries)")
                return
            delay = self._backoff(deliveries)
            log.warning("%s failed on delivery %d/%d of message #%d (%s: %s); retrying in %.1fs",
                        service, deliveries, max_deliver, seq, type(exc).__name__, exc, delay)
            raise NackMessage(delay=delay) from exc
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            HANDLER_SECONDS.labels(service=service, subject=subject).observe(
                time.perf_counter() - started)

    def _backoff(self, deliveries: int) -> float:
        steps = self.bus_settings.backoff or [1.0]
        base = steps[min(deliveries - 1, len(steps) - 1)]
        return max(0.0, base * random.uniform(0.8, 1.2))

    async def _keep_alive(self, message: Any) -> None:
        period = max(0.5, self.bus_settings.ack_wait / 3)
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(Exception):
                await message.in_progress()


def _short_errors(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5]]
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


async def replay(bus: Bus, subject: str, *, batch: int = 256,
                 after: int | None = None) -> list[Any]:
    """Every message stored on ``subject`` (wildcards allowed), oldest first, read through
    an ephemeral consumer that acks nothing and disappears when idle. ``after``: only
    those past that stream sequence."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy as JsAckPolicy
    from nats.js.api import ConsumerConfig as JsConsumerConfig
    from nats.js.api import DeliverPolicy

    js = bus.js
    info = await js.stream_info(STREAM_NAME, subjects_filter=subject)
    if not (info.state.subjects or {}):
        return []
    if after is not None and after >= info.state.last_seq:
        return []
    sub = await js.pull_subscribe(
        subject, stream=STREAM_NAME,
        config=JsConsumerConfig(
            ack_policy=JsAckPolicy.NONE, inactive_threshold=30.0,
            deliver_policy=DeliverPolicy.ALL if after is None
            else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=None if after is None else after + 1))
    out: list[Any] = []
    try:
        if (await sub.consumer_info()).num_pending == 0:
            return out  # none past ``after``: do not wait for a fetch to time out
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=2.0)
            except (NatsTimeout, TimeoutError):  # nats-py 2.16 raises either
                break
            out.extend(msgs)
            if msgs and msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out


async def stream_position(bus: Bus) -> int:
    """The stream's last sequence: what a later ``replay(after=...)`` starts after."""
    return int((await bus.js.stream_info(STREAM_NAME)).state.last_seq)
