"""Hostile specs: a ``$ref`` that leads out of the document is refused wherever it stands
(also inside literal values such as ``default`` and ``example``, which the validator
follows too), nothing is opened or connected while a spec is read, a rejection never
quotes a referenced value, and nesting is bounded before a parser recurses.

Every placement is aimed at two real targets: a listening TCP socket on 127.0.0.1 that
records each connection (and answers with a marker, so an echo would show), and a
``file://`` URL of a temporary file that holds a marker. An audit hook
(``sys.addaudithook``) records every ``open`` of that file and every ``socket.connect``,
``socket.getaddrinfo`` and ``urllib.Request`` while ``load_spec`` runs, so a fetch is seen
even if its result never reaches the message."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from syllabus.services.runtime import _openapi
from syllabus.services.runtime._openapi import MAX_DEPTH, SpecError, load_spec

ROOT = Path(__file__).resolve().parent.parent
HIVE = ROOT / "examples" / "hive-api" / "openapi.yaml"

# --- the audit hook ----------------------------------------------------------------------
# Audit hooks cannot be removed, so one is installed for the whole session and only records
# while ``_AUDIT["on"]`` is set (inside ``_watching``).

_NET_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
               "socket.gethostbyname_ex", "socket.gethostbyaddr", "urllib.Request"}
_AUDIT: dict[str, Any] = {"on": False, "names": (), "events": []}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _AUDIT["on"]:
        return
    if event in _NET_EVENTS:
        _AUDIT["events"].append((event, repr(args)[:200]))
    elif event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
        path = os.fsdecode(args[0])
        if any(name in path for name in _AUDIT["names"]):
            _AUDIT["events"].append((event, path))


sys.addaudithook(_audit)


@contextmanager
def _watching(*names: str) -> Iterator[list[tuple[str, str]]]:
    """Record opens of files whose path contains one of ``names``, and all socket/DNS/urllib
    events, while the block runs."""
    events: list[tuple[str, str]] = []
    _AUDIT.update(on=True, names=names, events=events)
    try:
        yield events
    finally:
        _AUDIT.update(on=False, names=(), events=[])


@pytest.fixture(scope="module", autouse=True)
def _validators_warm() -> None:
    """openapi-spec-validator reads its own bundled meta-schemas once per process, through
    ``urlopen("file://.../site-packages/...")``; that read does not depend on the input,
    so it happens here, before anything is watched."""
    for version in ("2.0", "3.0.3", "3.1.0"):
        doc = _swagger() if version == "2.0" else _oas(version)
        load_spec(json.dumps(doc).encode(), filename="warm.json")


def test_the_audit_hook_sees_what_it_must():
    """The hook is the witness of every other test here: it must see an open of the marker
    file and a connect, or its silence would prove nothing."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with _watching("audit-self-test") as events:
            with contextlib.suppress(OSError):
                open("/nonexistent/audit-self-test")  # noqa: SIM115
            with socket.create_connection(srv.getsockname(), timeout=2):
                pass
    kinds = {e for e, _ in events}
    assert "open" in kinds and "socket.connect" in kinds


# --- the targets -------------------------------------------------------------------------


class Listener:
    """A real TCP server on 127.0.0.1: counts connections, answers each with JSON that
    holds a marker (so if anything did fetch from it, an echo of the answer would show)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        body = json.dumps(self.marker).encode()
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: " + str(len(body)).encode() +
                                 b"\r\n\r\n" + body)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    srv = Listener(f"HTTP-MARKER-{uuid.uuid4().hex}")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def marker_file(tmp_path_factory) -> tuple[Path, str]:
    marker = f"FILE-MARKER-{uuid.uuid4().hex}"
    path = tmp_path_factory.mktemp("refs") / f"secret-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(marker))  # valid JSON and YAML: a fetch would parse it
    return path, marker


@pytest.fixture(params=["http", "file"])
def target(request, listener, marker_file) -> dict[str, Any]:
    """A ``$ref`` value that leads out of the document, and what a fetch of it would
    leave behind."""
    path, file_marker = marker_file
    if request.param == "http":
        return {"ref": f"http://127.0.0.1:{listener.port}/schema.json",
                "marker": listener.marker, "name": f"127.0.0.1:{listener.port}"}
    return {"ref": path.as_uri(), "marker": file_marker, "name": path.name}


def _refused(data: bytes, filename: str, target: dict[str, Any], listener: Listener
             ) -> SpecError:
    """Load ``data`` while watching; return the SpecError after checking that nothing was
    opened, connected or echoed."""
    before = listener.connections
    with _watching(target["name"]) as events, pytest.raises(SpecError) as info:
        load_spec(data, filename=filename)
    err = info.value
    assert events == [], f"load_spec opened or connected: {events}"
    assert listener.connections == before, "load_spec connected to the listener"
    for text in (str(err), err.message, repr(err)):
        assert target["marker"] not in text
    assert str(err).startswith(f"{filename}: ")
    return err


# --- the placements ----------------------------------------------------------------------
# Each builds a spec with ``R`` (a {"$ref": url} object) in one place, and gives the JSON
# path of the offending "$ref".

_MEDIA = ("paths", "/x", "get", "responses", "200", "content", "application/json")


def _oas(version: str, op: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": version, "info": {"title": "t", "version": "1"},
        "paths": {"/x": {"get": op or {"responses": {"200": {"description": "ok"}}}}}}
    doc.update(top)
    return doc


def _schema_op(schema: Any, media_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    media = {"schema": schema, **(media_extra or {})}
    return {"responses": {"200": {"description": "ok",
                                  "content": {"application/json": media}}}}


def _path(*parts: Any) -> str:
    return _openapi.json_path(parts)


Placement = Callable[[dict[str, Any], str], tuple[dict[str, Any], str]]


def _oas_placements() -> dict[str, Placement]:
    s = (*_MEDIA, "schema")
    return {
        # literal positions: the validator follows a $ref in a default (the reported hole)
        "default-object": lambda R, v: (
            _oas(v, _schema_op({"type": "object", "default": R})), _path(*s, "default", "$ref")),
        "default-string": lambda R, v: (
            _oas(v, _schema_op({"type": "string", "default": R})), _path(*s, "default", "$ref")),
        "default-in-parameter-schema": lambda R, v: (
            _oas(v, {"parameters": [{"name": "q", "in": "query",
                                     "schema": {"type": "string", "default": R}}],
                     "responses": {"200": {"description": "ok"}}}),
            _path("paths", "/x", "get", "parameters", 0, "schema", "default", "$ref")),
        "default-nested": lambda R, v: (
            _oas(v, _schema_op({"type": "object", "default": {"a": [{"b": R}]}})),
            _path(*s, "default", "a", 0, "b", "$ref")),
        "example-schema": lambda R, v: (
            _oas(v, _schema_op({"type": "object", "example": R})), _path(*s, "example", "$ref")),
        "example-media": lambda R, v: (
            _oas(v, _schema_op({"type": "object"}, {"example": R})),
            _path(*_MEDIA, "example", "$ref")),
        "examples-media": lambda R, v: (
            _oas(v, _schema_op({"type": "object"}, {"examples": {"one": R}})),
            _path(*_MEDIA, "examples", "one", "$ref")),
        "examples-value": lambda R, v: (
            _oas(v, _schema_op({"type": "object"}, {"examples": {"one": {"value": R}}})),
            _path(*_MEDIA, "examples", "one", "value", "$ref")),
        "enum": lambda R, v: (
            _oas(v, _schema_op({"type": "object", "enum": [R]})), _path(*s, "enum", 0, "$ref")),
        # schema positions
        "schema": lambda R, v: (_oas(v, _schema_op(R)), _path(*s, "$ref")),
        "items": lambda R, v: (
            _oas(v, _schema_op({"type": "array", "items": R})), _path(*s, "items", "$ref")),
        "properties": lambda R, v: (
            _oas(v, _schema_op({"type": "object", "properties": {"a": R}})),
            _path(*s, "properties", "a", "$ref")),
        "additionalProperties": lambda R, v: (
            _oas(v, _schema_op({"type": "object", "additionalProperties": R})),
            _path(*s, "additionalProperties", "$ref")),
        "allOf": lambda R, v: (
            _oas(v, _schema_op({"allOf": [{"type": "object"}, R]})), _path(*s, "allOf", 1, "$ref")),
        "oneOf": lambda R, v: (
            _oas(v, _schema_op({"oneOf": [R]})), _path(*s, "oneOf", 0, "$ref")),
        "anyOf": lambda R, v: (
            _oas(v, _schema_op({"anyOf": [R]})), _path(*s, "anyOf", 0, "$ref")),
        "not": lambda R, v: (_oas(v, _schema_op({"not": R})), _path(*s, "not", "$ref")),
        "components-schema": lambda R, v: (
            _oas(v, components={"schemas": {"A": R}}), _path("components", "schemas", "A", "$ref")),
        # OpenAPI objects that may be a Reference Object
        "parameters": lambda R, v: (
            _oas(v, {"parameters": [R], "responses": {"200": {"description": "ok"}}}),
            _path("paths", "/x", "get", "parameters", 0, "$ref")),
        "path-parameters": lambda R, v: (
            {**_oas(v), "paths": {"/x": {"parameters": [R], "get": {
                "responses": {"200": {"description": "ok"}}}}}},
            _path("paths", "/x", "parameters", 0, "$ref")),
        "responses": lambda R, v: (
            _oas(v, {"responses": {"200": R}}), _path("paths", "/x", "get", "responses", "200", "$ref")),
        "requestBody": lambda R, v: (
            _oas(v, {"requestBody": R, "responses": {"200": {"description": "ok"}}}),
            _path("paths", "/x", "get", "requestBody", "$ref")),
        "headers": lambda R, v: (
            _oas(v, {"responses": {"200": {"description": "ok", "headers": {"X-A": R}}}}),
            _path("paths", "/x", "get", "responses", "200", "headers", "X-A", "$ref")),
        "links": lambda R, v: (
            _oas(v, {"responses": {"200": {"description": "ok", "links": {"next": R}}}}),
            _path("paths", "/x", "get", "responses", "200", "links", "next", "$ref")),
        "callbacks": lambda R, v: (
            _oas(v, {"callbacks": {"onEvent": R}, "responses": {"200": {"description": "ok"}}}),
            _path("paths", "/x", "get", "callbacks", "onEvent", "$ref")),
        "callback-path-item": lambda R, v: (
            _oas(v, {"callbacks": {"onEvent": {"{$request.body#/url}": R}},
                     "responses": {"200": {"description": "ok"}}}),
            _path("paths", "/x", "get", "callbacks", "onEvent", "{$request.body#/url}", "$ref")),
        "path-item": lambda R, v: (
            {**_oas(v), "paths": {"/x": R}}, _path("paths", "/x", "$ref")),
        "security-scheme": lambda R, v: (
            _oas(v, components={"securitySchemes": {"key": R}}),
            _path("components", "securitySchemes", "key", "$ref")),
        "x-extension": lambda R, v: (
            _oas(v, **{"x-vendor": {"nested": R}}), _path("x-vendor", "nested", "$ref")),
    }


def _oas31_only() -> dict[str, Placement]:
    s = (*_MEDIA, "schema")
    return {
        "examples-schema-list": lambda R, v: (
            _oas(v, _schema_op({"type": "object", "examples": [R]})),
            _path(*s, "examples", 0, "$ref")),
        "const": lambda R, v: (
            _oas(v, _schema_op({"const": R})), _path(*s, "const", "$ref")),
        "ref-with-siblings": lambda R, v: (
            _oas(v, _schema_op({**R, "description": "3.1 allows siblings"})), _path(*s, "$ref")),
        "prefixItems": lambda R, v: (
            _oas(v, _schema_op({"type": "array", "prefixItems": [R]})),
            _path(*s, "prefixItems", 0, "$ref")),
        "webhooks": lambda R, v: (
            {**_oas(v), "webhooks": {"evt": R}}, _path("webhooks", "evt", "$ref")),
        "components-pathItems": lambda R, v: (
            _oas(v, components={"pathItems": {"P": R}}),
            _path("components", "pathItems", "P", "$ref")),
    }


def _swagger(op: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "swagger": "2.0", "info": {"title": "t", "version": "1"},
        "paths": {"/x": {"get": op or {"responses": {"200": {"description": "ok"}}}}}}
    doc.update(top)
    return doc


def _sw_schema(schema: Any, **extra: Any) -> dict[str, Any]:
    return {"responses": {"200": {"description": "ok", "schema": schema, **extra}}}


def _swagger_placements() -> dict[str, Placement]:
    s = ("paths", "/x", "get", "responses", "200", "schema")
    return {
        "default-object": lambda R, v: (
            _swagger(_sw_schema({"type": "object", "default": R})), _path(*s, "default", "$ref")),
        "default-in-parameter": lambda R, v: (
            _swagger({"parameters": [{"name": "q", "in": "query", "type": "string",
                                      "default": R}],
                      "responses": {"200": {"description": "ok"}}}),
            _path("paths", "/x", "get", "parameters", 0, "default", "$ref")),
        "default-in-definition": lambda R, v: (
            _swagger(definitions={"A": {"type": "string", "default": R}}),
            _path("definitions", "A", "default", "$ref")),
        "example": lambda R, v: (
            _swagger(_sw_schema({"type": "object", "example": R})), _path(*s, "example", "$ref")),
        "examples": lambda R, v: (
            _swagger(_sw_schema({"type": "object"}, examples={"application/json": R})),
            _path("paths", "/x", "get", "responses", "200", "examples", "application/json",
                  "$ref")),
        "enum": lambda R, v: (
            _swagger(_sw_schema({"type": "object", "enum": [R]})), _path(*s, "enum", 0, "$ref")),
        "schema": lambda R, v: (_swagger(_sw_schema(R)), _path(*s, "$ref")),
        "items": lambda R, v: (
            _swagger(_sw_schema({"type": "array", "items": R})), _path(*s, "items", "$ref")),
        "properties": lambda R, v: (
            _swagger(_sw_schema({"type": "object", "properties": {"a": R}})),
            _path(*s, "properties", "a", "$ref")),
        "allOf": lambda R, v: (
            _swagger(_sw_schema({"allOf": [R]})), _path(*s, "allOf", 0, "$ref")),
        "definitions": lambda R, v: (
            _swagger(definitions={"A": R}), _path("definitions", "A", "$ref")),
        "parameters": lambda R, v: (
            _swagger({"parameters": [R], "responses": {"200": {"description": "ok"}}}),
            _path("paths", "/x", "get", "parameters", 0, "$ref")),
        "responses": lambda R, v: (
            _swagger({"responses": {"200": R}}),
            _path("paths", "/x", "get", "responses", "200", "$ref")),
        "headers": lambda R, v: (
            _swagger({"responses": {"200": {"description": "ok", "headers": {"X-A": R}}}}),
            _path("paths", "/x", "get", "responses", "200", "headers", "X-A", "$ref")),
        "body-parameter-schema": lambda R, v: (
            _swagger({"parameters": [{"name": "b", "in": "body", "schema": R}],
                      "responses": {"200": {"description": "ok"}}}),
            _path("paths", "/x", "get", "parameters", 0, "schema", "$ref")),
        "path-item": lambda R, v: (
            {**_swagger(), "paths": {"/x": R}}, _path("paths", "/x", "$ref")),
    }


CASES = [
    *[("3.0.3", name, p) for name, p in _oas_placements().items()],
    *[("3.1.0", name, p) for name, p in {**_oas_placements(), **_oas31_only()}.items()],
    *[("2.0", name, p) for name, p in _swagger_placements().items()],
]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize(("version", "name", "place"), CASES,
                         ids=[f"{v}-{n}" for v, n, _ in CASES])
def test_a_ref_out_of_the_document_is_refused_everywhere(version, name, place, fmt, target,
                                                        listener):
    doc, where = place({"$ref": target["ref"]}, version)
    data = json.dumps(doc).encode() if fmt == "json" else \
        yaml.safe_dump(doc, sort_keys=False).encode()
    err = _refused(data, f"spec.{fmt}", target, listener)
    assert err.path == where
    assert "refers to another document" in err.message


@pytest.mark.parametrize("ref", [
    "other.yaml#/components/schemas/A",      # relative: resolved against the spec's URL
    "//127.0.0.1:{port}/schema.json",        # network-path reference
    "HTTP://127.0.0.1:{port}/schema.json",   # schemes are case-insensitive
    " http://127.0.0.1:{port}/schema.json",  # leading space
    "ftp://127.0.0.1:{port}/schema.json",
    "urn:uuid:{uuid}",
    "",
])
def test_every_non_local_spelling_is_refused(ref, listener, marker_file):
    ref = ref.format(port=listener.port, uuid=uuid.uuid4())
    doc = _oas("3.1.0", _schema_op({"type": "string", "default": {"$ref": ref}}))
    target = {"ref": ref, "marker": listener.marker, "name": marker_file[0].name}
    err = _refused(json.dumps(doc).encode(), "spec.json", target, listener)
    assert err.path == _path(*_MEDIA, "schema", "default", "$ref")


def test_the_reported_yaml_is_refused_before_anything_is_read(listener, marker_file):
    """The report's own spec, as a user would write it."""
    path, marker = marker_file
    data = f"""openapi: 3.0.3
info: {{title: Leak, version: "1"}}
paths:
  /x:
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                default: {{$ref: "{path.as_uri()}"}}
""".encode()
    err = _refused(data, "leak.yaml", {"ref": path.as_uri(), "marker": marker,
                                       "name": path.name}, listener)
    assert str(err).startswith("leak.yaml: paths./x.get.responses.200.content."
                               "application/json.schema.default.$ref: ")


# --- defence in depth: the validator alone --------------------------------------------


@pytest.mark.parametrize("version,doc_for", [
    ("3.0", lambda R: _oas("3.0.3", _schema_op({"type": "object", "default": R}))),
    ("3.1", lambda R: _oas("3.1.0", _schema_op({"type": "string", "default": R}))),
    ("3.1", lambda R: _oas("3.1.0", _schema_op(R))),
    ("2", lambda R: _swagger(_sw_schema({"type": "object", "default": R}))),
    ("2", lambda R: _swagger(_sw_schema(R))),
])
def test_the_validator_alone_fetches_nothing(version, doc_for, target, listener):
    """``_validate`` without the pre-check: its resolver claims every scheme and refuses,
    so even a non-local ``$ref`` that reached it opens no file and no socket."""
    doc = doc_for({"$ref": target["ref"]})
    before = listener.connections
    with _watching(target["name"]) as events, pytest.raises(SpecError) as info:
        _openapi._validate(doc, "spec.json", version)
    assert events == [] and listener.connections == before
    assert target["marker"] not in str(info.value)
    assert "nothing is fetched" in info.value.message


@pytest.mark.parametrize("scheme", ["http", "https", "file", "ftp", "", "gopher", "jar",
                                    "urn", "data"])
def test_the_validator_handlers_claim_every_scheme(scheme):
    handlers = _openapi._NO_FETCH
    assert scheme in handlers
    with pytest.raises(_openapi._FetchRefused):
        handlers[scheme](f"{scheme}://127.0.0.1/x")


def _url_keywords(url: str) -> dict[str, dict[str, Any]]:
    return {
        # $id moves the base URI: a local "#/..." ref beneath it now names a remote document
        "$id-with-local-ref": _oas("3.1.0", _schema_op({"$ref": "#/components/schemas/A"}),
                                   components={"schemas": {
                                       "A": {"$id": url, "type": "object", "properties": {
                                           "b": {"$ref": "#/components/schemas/B"}}},
                                       "B": {"type": "string"}}}),
        "$id-with-local-ref-in-default": _oas("3.1.0", _schema_op({
            "$id": url, "type": "object",
            "properties": {"b": {"type": "object", "default": {"$ref": "#/info"}}}})),
        "$schema": _oas("3.1.0", _schema_op({"$schema": url, "type": "object"})),
        "jsonSchemaDialect": {**_oas("3.1.0", _schema_op({"type": "object"})),
                              "jsonSchemaDialect": url},
        "$dynamicRef": _oas("3.1.0", _schema_op({"$dynamicRef": url})),
        "externalDocs": _oas("3.0.3", externalDocs={"url": url}),
        "server": _oas("3.0.3", servers=[{"url": url}]),
    }


@pytest.mark.parametrize("keyword", list(_url_keywords("")))
def test_other_keywords_that_take_a_url_fetch_nothing(keyword, target, listener):
    """Whether such a spec loads or is refused, reading it touches nothing."""
    doc = _url_keywords(target["ref"])[keyword]
    before = listener.connections
    with _watching(target["name"]) as events:
        try:
            load_spec(json.dumps(doc).encode(), filename="url.json")
        except SpecError as exc:
            assert target["marker"] not in str(exc)
    assert events == [] and listener.connections == before


def test_a_local_ref_in_a_default_that_does_not_resolve_is_named():
    doc = _oas("3.1.0", _schema_op({"type": "object", "default": {"$ref": "#/nope"}}))
    with pytest.raises(SpecError) as info:
        load_spec(json.dumps(doc).encode(), filename="d.json")
    assert info.value.message.startswith("'#/nope' does not resolve")


# --- local refs keep working -----------------------------------------------------------


def _local_refs(version: str) -> dict[str, Any]:
    comp = "#/components"
    doc = _oas(version, {
        "parameters": [{"$ref": f"{comp}/parameters/Q"}],
        "requestBody": {"$ref": f"{comp}/requestBodies/B"},
        "callbacks": {"done": {"$ref": f"{comp}/callbacks/Done"}},
        "responses": {"200": {"$ref": f"{comp}/responses/Ok"}},
    }, components={
        "schemas": {
            "Id": {"type": "string", "example": "i-1"},
            "Item": {"type": "object", "properties": {
                "id": {"$ref": f"{comp}/schemas/Id"},
                "tags": {"type": "array", "items": {"$ref": f"{comp}/schemas/Id"}},
                "any": {"anyOf": [{"$ref": f"{comp}/schemas/Id"}, {"type": "integer"}]},
                "one": {"oneOf": [{"$ref": f"{comp}/schemas/Id"}]},
                "all": {"allOf": [{"$ref": f"{comp}/schemas/Id"}]},
                # a "$ref" inside a literal that stays inside the document is data
                "meta": {"type": "object", "example": {"$ref": "#/not/a/pointer"}},
            }},
        },
        "parameters": {"Q": {"name": "q", "in": "query", "schema": {"$ref": f"{comp}/schemas/Id"}}},
        "requestBodies": {"B": {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"{comp}/schemas/Item"},
            "examples": {"e": {"$ref": f"{comp}/examples/E"}}}}}},
        "examples": {"E": {"value": {"id": "i-2"}}},
        "headers": {"H": {"schema": {"type": "integer"}}},
        "links": {"L": {"operationId": "get_x"}},
        "responses": {"Ok": {"description": "ok",
                             "headers": {"X-Count": {"$ref": f"{comp}/headers/H"}},
                             "links": {"self": {"$ref": f"{comp}/links/L"}},
                             "content": {"application/json": {
                                 "schema": {"$ref": f"{comp}/schemas/Item"}}}}},
        "callbacks": {"Done": {"{$request.body#/url}": {"post": {
            "requestBody": {"$ref": f"{comp}/requestBodies/B"},
            "responses": {"200": {"description": "ok"}}}}}},
    })
    doc["paths"]["/x"]["get"]["operationId"] = "get_x"
    return doc


@pytest.mark.parametrize("version", ["3.0.3", "3.1.0"])
def test_local_refs_in_every_placement_still_load(version):
    spec = load_spec(json.dumps(_local_refs(version)).encode(), filename="local.json")
    [tool] = spec.tools
    assert tool.locations == {"q": "query", "body": "body"}
    body = tool.parameters["properties"]["body"]["properties"]
    assert body["id"] == {"type": "string", "example": "i-1"}
    assert body["tags"]["items"] == {"type": "string", "example": "i-1"}
    assert body["meta"]["example"] == {"$ref": "#/not/a/pointer"}
    assert tool.response_schema["properties"]["any"]["anyOf"][0]["type"] == "string"


def test_the_hive_example_still_loads():
    spec = load_spec(HIVE.read_bytes(), filename="openapi.yaml")
    assert len(spec.tools) == 9


def test_a_local_path_item_ref_loads():
    doc = _oas("3.1.0", components={"pathItems": {"P": {"get": {
        "operationId": "p", "responses": {"200": {"description": "ok"}}}}}})
    doc["paths"] = {"/p": {"$ref": "#/components/pathItems/P"}}
    assert [t.name for t in load_spec(json.dumps(doc).encode(), filename="p.json").tools] == ["p"]


# --- rejection messages never quote the value -------------------------------------------


def test_a_type_error_names_the_path_but_not_the_value():
    secret = f"VALUE-MARKER-{uuid.uuid4().hex}"
    doc = _oas("3.0.3", {"responses": secret})
    with pytest.raises(SpecError) as info:
        load_spec(json.dumps(doc).encode(), filename="v.json")
    assert secret not in str(info.value)
    assert info.value.path == "paths./x.get.responses"
    assert info.value.message == "the value at this path (a string) is not of type 'object'"


def test_a_wrong_default_is_not_quoted():
    secret = f"VALUE-MARKER-{uuid.uuid4().hex}"
    doc = _oas("3.1.0", _schema_op({"type": "object", "default": secret}))
    with pytest.raises(SpecError) as info:
        load_spec(json.dumps(doc).encode(), filename="v.json")
    assert secret not in str(info.value)
    assert "the value at this path" in info.value.message


@pytest.mark.parametrize(("schema", "instance", "expected"), [
    (False, "s3cr3t", "False schema does not allow the value at this path (a string)"),
    ({"enum": ["a"]}, "s3cr3t", "the value at this path (a string) is not one of ['a']"),
    ({"maxLength": 2}, "s3cr3t", "the value at this path (a string) is too long"),
    ({"type": "string"}, {"k": "s3cr3t"},
     "the value at this path (an object) is not of type 'string'"),
    # a value that is also a substring of the rest is replaced only where it stands alone
    ({"multipleOf": 10}, 1, "the value at this path (an integer) is not a multiple of 10"),
    ({"required": ["s3cr3t"]}, {}, "'s3cr3t' is a required property"),  # from the schema
])
def test_validator_messages_lose_the_value(schema, instance, expected):
    from jsonschema import Draft202012Validator

    [err] = Draft202012Validator(schema).iter_errors(instance)
    assert _openapi._message(err) == expected


def test_messages_are_capped():
    doc = _oas("3.0.3")
    doc["info"]["y" * 10_000] = 1  # "Additional properties are not allowed ('yyy...' ...)"
    with pytest.raises(SpecError) as info:
        load_spec(json.dumps(doc).encode(), filename="v.json")
    assert info.value.path == "info"
    assert len(info.value.message) <= _openapi.MAX_MESSAGE
    long_ref = "#/" + "n" * 10_000
    with pytest.raises(SpecError) as info:
        load_spec(json.dumps(_oas("3.0.3", _schema_op({"$ref": long_ref}))).encode(),
                  filename="v.json")
    assert "does not resolve" in info.value.message
    assert len(info.value.message) <= _openapi.MAX_MESSAGE


def test_a_long_key_does_not_make_a_long_path():
    key = "/" + "k" * 100_000
    doc = _oas("3.0.3")
    doc["paths"][key] = {"get": {"responses": 5}}
    with pytest.raises(SpecError) as info:
        load_spec(json.dumps(doc).encode(), filename="k.json")
    path = info.value.path
    assert len(path) <= _openapi.MAX_PATH
    assert path.startswith("paths./kkk") and path.endswith("kkk.get.responses")


def test_no_validated_spec_is_kept_alive():
    """openapi-spec-validator caches ``iter_errors`` per validator without a bound; the
    loader drops that cache, so a service that reads many specs does not keep them all."""
    import gc

    from openapi_spec_validator.validation.validators import SpecValidator

    for i in range(5):
        load_spec(json.dumps(_oas("3.1.0", info={"title": f"t{i}", "version": "1"})).encode(),
                  filename="gc.json")
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, SpecValidator)] == []


# --- nesting depth ----------------------------------------------------------------------

_DEEP = f"nested deeper than {MAX_DEPTH} levels"


@pytest.mark.parametrize("filename", ["deep.json", "deep.yaml"])
@pytest.mark.parametrize("text", [
    "[" * 100_000,
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 100_000 + "1" + "}" * 100_000,
    "{a: " * 100_000,
    '{"openapi": "3.0.0", "x": ' + "[" * 100_000,
    "openapi: 3.0.0\nx: " + "[" * 100_000,
    "openapi: 3.0.0\nx: " + "{a: " * 100_000,
    "openapi: 3.0.0\nx:\n" + "- " * 100_000 + "a",
], ids=["brackets", "balanced", "json-objects", "flow-maps", "json-in-spec", "yaml-flow-seq",
        "yaml-flow-map", "yaml-block-seq"])
def test_deep_nesting_is_refused_not_a_recursion_error(text, filename):
    with pytest.raises(SpecError) as info:
        load_spec(text.encode(), filename=filename)
    assert _DEEP in str(info.value) and str(info.value).startswith(f"{filename}: ")


def test_deep_block_yaml_is_refused():
    lines = ["openapi: 3.0.0", "x:"]
    lines += [" " * i + "a:" for i in range(1, MAX_DEPTH + 50)]
    with pytest.raises(SpecError) as info:
        load_spec("\n".join(lines).encode(), filename="deep.yaml")
    assert _DEEP in str(info.value)


def test_deep_nesting_through_yaml_aliases_is_refused():
    """Each alias adds a level that the text does not show; the bound is on the parsed
    value, not only on the text."""
    lines = ["openapi: 3.0.0", "a0: &a0 [x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, MAX_DEPTH + 50)]
    with pytest.raises(SpecError) as info:
        load_spec("\n".join(lines).encode(), filename="alias.yaml")
    assert _DEEP in str(info.value)


def test_deep_nesting_through_a_ref_chain_is_refused():
    """Shallow text, deep once resolved: schema i is an array of schema i+1."""
    n = MAX_DEPTH * 2
    schemas = {f"S{i}": {"type": "array", "items": {"$ref": f"#/components/schemas/S{i + 1}"}}
               for i in range(n)}
    schemas[f"S{n}"] = {"type": "string"}
    doc = _oas("3.0.3", _schema_op({"$ref": "#/components/schemas/S0"}),
               components={"schemas": schemas})
    with pytest.raises(SpecError) as info:
        load_spec(json.dumps(doc).encode(), filename="chain.json")
    assert info.value.message == f"{_DEEP} once its $refs are resolved"


def test_brackets_inside_strings_do_not_count():
    deep_text = "[" * 10_000 + "{" * 10_000
    doc = _oas("3.0.3", {"description": deep_text, "responses": {"200": {"description": "ok"}}})
    for data in (json.dumps(doc).encode(), yaml.safe_dump(doc).encode()):
        spec = load_spec(data, filename="strings.json")
        assert spec.tools[0].description == deep_text


def test_the_json_pre_scan_is_linear():
    """Escaped quotes with no closing quote made a naive string pattern backtrack
    quadratically (seconds for 16 kB); a megabyte must take a moment."""
    import time

    for tail in ("", "\\"):
        data = ('{"openapi": "3.0.0", "x": "' + '\\"' * 500_000 + tail).encode()
        start = time.monotonic()
        with pytest.raises(SpecError) as info:
            load_spec(data, filename="q.json")
        assert time.monotonic() - start < 2
        assert "invalid JSON" in info.value.message


def test_a_deep_but_reasonable_spec_loads():
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        schema = {"type": "object", "properties": {"a": schema}}
    spec = load_spec(json.dumps(_oas("3.0.3", _schema_op(schema))).encode(), filename="ok.json")
    assert spec.tools[0].response_schema["properties"]["a"]["type"] == "object"
