"""``syllabus asyncapi``: the AsyncAPI 3.0 document of every service's channels and messages.

It is generated from the FastStream apps themselves: every service's router is mounted on
one broker, exactly as ``syllabus run`` does, but nothing connects. FastStream then
describes the subscribers (one ``receive`` operation per durable consumer, with the
handler's docstring). Two things FastStream cannot see are added from the contracts:

* the payload of each consumed message. ``Bus.consumer`` hands FastStream a handler that
  takes the raw message (it validates the payload itself, to dead-letter what does not
  validate), so FastStream would document an empty payload; the contract model of the
  subject (``SUBJECT_MODELS``) is what actually travels, and is put in its place;
* the ``send`` side. Services publish through ``Bus.publish``, not through FastStream
  publishers, so a publisher with the contract model is declared here for every subject
  of ``SUBJECT_MODELS`` and for every service's dead-letter subject.

Every message carries the headers in ``HEADERS``. The document is the contract for
third-party producers and consumers; ``docs/asyncapi.yaml`` is this command's output and a
test fails when it is out of date.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import click
import yaml

from syllabus.contracts import (
    HEADER_COLLECTION,
    HEADER_MSG_ID,
    HEADER_RUN_ID,
    STREAM_NAME,
    STREAM_SUBJECTS,
    SUBJECT_MODELS,
    DeadLetter,
    dlq_subject,
)

__all__ = ["HEADERS", "ConsumerInfo", "asyncapi_command", "build_asyncapi", "consumers",
           "render_asyncapi"]

#: the placeholder server of the document (the compose/Kubernetes service name)
SERVER_URL = "nats://nats:4222"

HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        HEADER_MSG_ID: {
            "type": "string",
            "description": "content-derived id of the message; JetStream drops a second "
                           "publish with the same id within the duplicate window",
        },
        HEADER_RUN_ID: {"type": "string", "description": "the run the message belongs to"},
        HEADER_COLLECTION: {"type": "string", "description": "the collection (data set)"},
    },
    "required": [HEADER_MSG_ID],
}


class ConsumerInfo(NamedTuple):
    """One durable consumer of a service."""

    service: str
    subject: str
    durable: str


@contextmanager
def _runtime() -> Iterator[tuple[Any, dict[str, Any]]]:
    """A runtime with every service's router on its broker, nothing connected."""
    from ..runtime import Runtime, Settings, StoreSettings
    from ._services import SERVICES, load_service

    with tempfile.TemporaryDirectory(prefix="syllabus-spec-") as tmp:
        settings = Settings(store=StoreSettings(kind="local", path=Path(tmp)))
        settings.nats.url = SERVER_URL
        rt = Runtime.create(settings, client_name="syllabus-asyncapi")
        routers = {name: load_service(name).build_router(rt) for name in SERVICES}
        for router in routers.values():
            rt.bus.broker.include_router(router)
        yield rt, routers


def consumers() -> list[ConsumerInfo]:
    """Every service's durable consumers, read from its FastStream router."""
    out: list[ConsumerInfo] = []
    with _runtime() as (_rt, routers):
        subscribers = [(name, sub) for name, router in routers.items()
                       for sub in router.subscribers]
    for name, sub in subscribers:
        subject = getattr(sub, "subject", None) or sub._subject
        subject = getattr(subject, "template", subject)  # FastStream's Address
        out.append(ConsumerInfo(name, str(subject), sub.config.durable_name))
    return out


def _model_schema(model: type, schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as plain data."""
    from faststream.nats import NatsRouter
    from faststream.specification import AsyncAPI

    from ._services import SERVICES

    with _runtime() as (rt, _routers):
        publishers = NatsRouter()
        sends: dict[str, type] = dict(SUBJECT_MODELS)
        for name in SERVICES:
            sends[dlq_subject(name)] = DeadLetter
        for subject, model in sorted(sends.items()):
            publishers.publisher(subject, title=f"publish:{subject}", schema=model,
                                 description=(model.__doc__ or "").strip().split("\n\n")[0])
        rt.bus.broker.include_router(publishers)

        doc = AsyncAPI(
            rt.bus.broker, title="Syllabus", version=version("syllabus"),
            description=(f"Every message of the Syllabus pipeline. All subjects live in the "
                         f"JetStream stream {STREAM_NAME} ({', '.join(STREAM_SUBJECTS)}, file "
                         f"storage, limits retention). Each service consumes through a durable "
                         f"pull consumer named after the service and acknowledges after its "
                         f"output is stored and published; undeliverable messages go to "
                         f"syllabus.dlq.<service>. Generated by `syllabus asyncapi`."),
            schema_version="3.0.0",
        ).to_specification().to_jsonable()
    doc = json.loads(json.dumps(doc))  # plain dicts and lists only

    schemas: dict[str, Any] = {}
    components = doc.setdefault("components", {})
    for channel in doc.get("channels", {}).values():
        address = channel.get("address", "")
        model = sends.get(address)
        for ref in channel.get("messages", {}).values():
            name = ref["$ref"].rsplit("/", 1)[-1]
            message = components["messages"][name]
            if model is not None:
                message["payload"] = _model_schema(model, schemas)
                message["name"] = model.__name__
            message["headers"] = {"$ref": "#/components/schemas/SyllabusHeaders"}
            message.pop("correlationId", None)  # FastStream's, not set by Bus.publish
    # FastStream's own schemas (the empty payload of the raw handlers) are replaced
    schemas["SyllabusHeaders"] = HEADERS
    components["schemas"] = dict(sorted(schemas.items()))
    doc["servers"] = {"nats": {
        "host": SERVER_URL.removeprefix("nats://"), "protocol": "nats",
        "description": "NATS with JetStream; set SYLLABUS_NATS__URL to reach yours",
    }}
    for channel in doc.get("channels", {}).values():
        channel["servers"] = [{"$ref": "#/servers/nats"}]
    # FastStream keeps publishers in a set: sort, so the document is the same every time
    for part in (doc, components):
        for key in ("channels", "operations", "messages"):
            if key in part:
                part[key] = dict(sorted(part[key].items()))
    return doc


def render_asyncapi(fmt: str = "yaml") -> str:
    doc = build_asyncapi()
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


@click.command("asyncapi")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the document to this file (default: standard output).")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
def asyncapi_command(out: Path | None, fmt: str) -> None:
    """Write the AsyncAPI 3.0 document of every service's channels and messages.

    Generated from the services' FastStream routers (nothing connects) and the contract
    models. docs/asyncapi.yaml is this command's output: regenerate it with
    `syllabus asyncapi --out docs/asyncapi.yaml`.
    """
    text = render_asyncapi(fmt)
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}", err=True)
