"""A real local HTTP API with its OpenAPI spec, some of whose operations are broken on
purpose: for API filtering, the guarded caller and DFSDT/ReAct tests.

``ToolApi`` runs uvicorn + starlette in a background thread on a free 127.0.0.1 port.
``.spec_bytes`` is its OpenAPI 3.0 spec (YAML) whose server is ``.url``; ``.tools()``
loads it into ``ApiTool``s; ``.policy(**overrides)`` is a ``CallPolicy`` that allows this
(loopback) server explicitly, as the annotator's settings would have to.

Operations in the spec, by category (the first tag):

========== ==================== =========================== =================================
category   tool                 request                     behaviour
========== ==================== =========================== =================================
books      ``searchBooks``      GET /books?q=&limit=        works: list of books matching q
books      ``getBook``          GET /books/{book_id}        works: one book (404 if unknown)
books      ``borrowBook``       POST /books/{book_id}/loans works: 201 loan (a write method)
books      ``slowCatalog``      GET /books/catalog          BROKEN: hangs for 30 s (time-out)
books      ``bookCover``        GET /books/{book_id}/cover  BROKEN: 200 with an empty body
weather    ``currentWeather``   GET /weather/current?city=  works: temperature and conditions
weather    ``forecast``         GET /weather/forecast       works: ``days`` daily forecasts
weather    ``weatherAlerts``    GET /weather/alerts         BROKEN: 500 Internal Server Error
weather    ``radarMap``         GET /weather/radar          BROKEN: 200 text/html error page
currency   ``exchangeRates``    GET /rates?base=            works: rates against base
currency   ``convertCurrency``  GET /convert?from=&to=&     works: the converted amount
                                amount=
currency   ``legacyRates``      GET /rates/legacy           BROKEN: 200 text/plain, not JSON
currency   ``rateHistory``      GET /rates/history          BROKEN: wrong type (a JSON string
                                                            where an object is declared)
currency   ``clearRateCache``   DELETE /rates/cache         works, but destructive: refused
                                                            unless the host is a sandbox
========== ==================== =========================== =================================

``WORKING``, ``BROKEN`` (tool -> the filter reason expected) and ``DESTRUCTIVE`` list them.
The data are fixed (``BOOKS``, ``WEATHER``, ``RATES``), so a test can check an answer.

Routes outside the spec, for the caller's tests: ``/_test/echo`` (any method: the method,
path, query, headers and body it got, as JSON), ``/_test/redirect?to=URL&status=302``,
``/_test/big?bytes=N`` (a JSON string of about N bytes; ``&chunked=1`` streams it with
no Content-Length), ``/_test/slow?seconds=S``, ``/_test/list?n=N`` (a long JSON list
with empty fields, for compression), ``/_test/bomb?encoding=gzip|deflate|br&bytes=N`` (a
JSON string of about N bytes, always compressed with that Content-Encoding, whatever the
request's Accept-Encoding: a compression bomb for large N). ``/_test/echo`` also returns
``header_list``, every header line as sent (so a header sent twice shows twice). Every
request is recorded in ``.hits`` as ``(method, path)``, so a test can show that a refused
call sent nothing.

``ToolApi(tls=make_tls_files(tmp_path))`` serves the same routes over https with a
certificate for ``localhost`` only, signed by a test CA (``TlsFiles.context()`` is an SSL
context that trusts it).

Load with ``pytest_plugins = ["tests.tool_api"]`` for the function-scoped ``tool_api``
fixture (or use ``ToolApi()`` as a context manager).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._local_server import LocalServer

__all__ = ["BOOKS", "BROKEN", "DESTRUCTIVE", "RATES", "WEATHER", "WORKING", "LocalServer",
           "TlsFiles", "ToolApi", "make_tls_files", "tool_api"]

BOOKS = [
    {"id": "b1", "title": "The Hive and the Honey Bee", "author": "Dadant", "year": 1946},
    {"id": "b2", "title": "Honeybee Democracy", "author": "Seeley", "year": 2010},
    {"id": "b3", "title": "The Buzz about Bees", "author": "Tautz", "year": 2008},
    {"id": "b4", "title": "Beekeeping for Dummies", "author": "Blackiston", "year": 2002},
]
WEATHER = {
    "paris": {"city": "Paris", "temperature_c": 18.5, "conditions": "cloudy", "wind_kph": 12},
    "tokyo": {"city": "Tokyo", "temperature_c": 24.0, "conditions": "sunny", "wind_kph": 8},
    "lima": {"city": "Lima", "temperature_c": 16.0, "conditions": "fog", "wind_kph": 5},
}
RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "JPY": 162.0}

WORKING = ["searchBooks", "getBook", "borrowBook", "currentWeather", "forecast",
           "exchangeRates", "convertCurrency"]
BROKEN = {"slowCatalog": "timeout", "bookCover": "empty body", "weatherAlerts": "server error",
          "radarMap": "html error page", "legacyRates": "not json",
          "rateHistory": "wrong type"}
DESTRUCTIVE = ["clearRateCache"]


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate (for ``localhost`` only) with its key."""

    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA (and checks host names)."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls_files(folder: Path, names: tuple[str, ...] = ("localhost",)) -> TlsFiles:
    """A fresh CA and a server certificate whose only names are ``names`` (DNS names; no
    IP address, so ``https://127.0.0.1`` does not match it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    span = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("syllabus test CA"))
          .issuer_name(name("syllabus test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(span[0]).not_valid_after(span[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name(names[0]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(span[0]).not_valid_after(span[1])
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(ca=folder / "ca.pem", cert=folder / "cert.pem", key=folder / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


_BOMBS: dict[tuple[str, int], bytes] = {}


def _bomb(encoding: str, n: int) -> bytes:
    """``"xxx..."`` (n x's) compressed with ``encoding``, made in 1 MiB pieces and kept."""
    key = (encoding, n)
    if key not in _BOMBS:
        if encoding == "br":
            import brotli
            comp: Any = brotli.Compressor(quality=5)
            add, end = comp.process, comp.finish
        else:
            z = zlib.compressobj(9, zlib.DEFLATED,
                                 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
            add, end = z.compress, z.flush
        parts = [add(b'"')]
        piece = b"x" * min(n, 1 << 20)
        left = n
        while left > 0:
            parts.append(add(piece[:left]))
            left -= len(piece)
        parts += [add(b'"'), end()]
        _BOMBS[key] = b"".join(parts)
    return _BOMBS[key]


def _spec(url: str) -> dict[str, Any]:
    def op(op_id: str, tag: str, summary: str, *, params: list | None = None,
           schema: dict | None = None, media: str = "application/json",
           body: dict | None = None, status: str = "200") -> dict[str, Any]:
        out: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": summary,
                               "responses": {status: {"description": "ok", "content": {
                                   media: {"schema": schema or {"type": "object"}}}}}}
        if params:
            out["parameters"] = params
        if body:
            out["requestBody"] = {"required": True, "content": {"application/json": body}}
        return out

    def q(name: str, schema: dict, *, required: bool = False, desc: str = "") -> dict:
        p: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
        if required:
            p["required"] = True
        if desc:
            p["description"] = desc
        return p

    book_id = {"$ref": "#/components/parameters/BookId"}
    city = q("city", {"type": "string", "example": "Paris"}, required=True,
             desc="City name, e.g. Paris, Tokyo or Lima.")
    return {
        "openapi": "3.0.3",
        "info": {"title": "Test Tools", "version": "1.0"},
        "servers": [{"url": url}],
        "paths": {
            "/books": {"get": op("searchBooks", "books", "Search books by title or author",
                                 params=[q("q", {"type": "string", "example": "bee"},
                                           desc="Words to look for."),
                                         q("limit", {"type": "integer", "default": 10})],
                                 schema={"type": "array",
                                         "items": {"$ref": "#/components/schemas/Book"}})},
            "/books/catalog": {"get": op("slowCatalog", "books", "The whole catalog",
                                         schema={"type": "array"})},
            "/books/{book_id}": {"get": op("getBook", "books", "Get a book by id",
                                           params=[book_id],
                                           schema={"$ref": "#/components/schemas/Book"})},
            "/books/{book_id}/loans": {"post": op(
                "borrowBook", "books", "Borrow a book for a member", params=[book_id],
                status="201", body={"schema": {"type": "object", "required": ["member"],
                                               "properties": {"member": {"type": "string"}}},
                                    "example": {"member": "ada"}})},
            "/books/{book_id}/cover": {"get": op("bookCover", "books", "A book's cover data",
                                                 params=[book_id])},
            "/weather/current": {"get": op("currentWeather", "weather",
                                           "Current weather in a city", params=[city])},
            "/weather/forecast": {"get": op(
                "forecast", "weather", "Daily forecast for a city",
                params=[city, q("days", {"type": "integer", "minimum": 1, "maximum": 7,
                                         "default": 3})])},
            "/weather/alerts": {"get": op("weatherAlerts", "weather", "Severe weather alerts",
                                          params=[city])},
            "/weather/radar": {"get": op("radarMap", "weather", "Radar map data",
                                         params=[city])},
            "/rates": {"get": op("exchangeRates", "currency", "Exchange rates against a base",
                                 params=[q("base", {"type": "string",
                                                    "enum": sorted(RATES)})])},
            "/convert": {"get": op(
                "convertCurrency", "currency", "Convert an amount between currencies",
                params=[q("from", {"type": "string", "example": "EUR"}, required=True),
                        q("to", {"type": "string", "example": "USD"}, required=True),
                        q("amount", {"type": "number", "example": 10}, required=True)])},
            "/rates/legacy": {"get": op("legacyRates", "currency", "Rates, legacy format")},
            "/rates/history": {"get": op("rateHistory", "currency", "Historical rates",
                                         schema={"type": "object",
                                                 "properties": {"days": {"type": "array"}}})},
            "/rates/cache": {"delete": op("clearRateCache", "currency",
                                          "Clear the rate cache")},
        },
        "components": {
            "parameters": {"BookId": {"name": "book_id", "in": "path", "required": True,
                                      "schema": {"type": "string", "example": "b2"}}},
            "schemas": {"Book": {"type": "object", "properties": {
                "id": {"type": "string"}, "title": {"type": "string"},
                "author": {"type": "string"}, "year": {"type": "integer"}}}},
        },
    }


def build_app(hits: list[tuple[str, str]], stopping: threading.Event) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    def err(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def search_books(r: Request) -> Response:
        words = (r.query_params.get("q") or "").lower()
        limit = int(r.query_params.get("limit") or 10)
        found = [b for b in BOOKS if words in b["title"].lower() or words in b["author"].lower()]
        return JSONResponse(found[:limit])

    async def get_book(r: Request) -> Response:
        b = next((b for b in BOOKS if b["id"] == r.path_params["book_id"]), None)
        return JSONResponse(b) if b else err(404, "no such book")

    async def borrow(r: Request) -> Response:
        body = await r.json()
        if not isinstance(body, dict) or not body.get("member"):
            return err(400, "send {'member': ...}")
        return JSONResponse({"book_id": r.path_params["book_id"], "member": body["member"],
                             "due": "2025-07-01"}, status_code=201)

    async def nap(seconds: float) -> None:
        # wakes up early when the server stops, so a hanging handler does not outlive it
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stopping.is_set():
            await asyncio.sleep(0.05)

    async def slow_catalog(r: Request) -> Response:
        await nap(30)
        return JSONResponse(BOOKS)

    async def cover(r: Request) -> Response:
        return Response(b"", media_type="application/json")

    def weather_of(r: Request) -> dict[str, Any] | None:
        return WEATHER.get((r.query_params.get("city") or "").lower())

    async def current(r: Request) -> Response:
        w = weather_of(r)
        return JSONResponse(w) if w else err(404, "unknown city")

    async def forecast(r: Request) -> Response:
        w = weather_of(r)
        if not w:
            return err(404, "unknown city")
        days = int(r.query_params.get("days") or 3)
        return JSONResponse({"city": w["city"], "days": [
            {"day": i + 1, "high_c": w["temperature_c"] + i, "conditions": w["conditions"]}
            for i in range(days)]})

    async def alerts(r: Request) -> Response:
        return JSONResponse({"error": "internal error"}, status_code=500)

    async def radar(r: Request) -> Response:
        return Response("<!DOCTYPE html><html><head><title>Error</title></head><body>"
                        "<h1>Service temporarily unavailable</h1></body></html>",
                        media_type="text/html")

    async def rates(r: Request) -> Response:
        base = r.query_params.get("base") or "EUR"
        if base not in RATES:
            return err(400, "unknown base currency")
        return JSONResponse({"base": base, "rates": {k: round(v / RATES[base], 4)
                                                     for k, v in RATES.items()}})

    async def convert(r: Request) -> Response:
        src, dst = r.query_params.get("from"), r.query_params.get("to")
        if src not in RATES or dst not in RATES:
            return err(400, "unknown currency")
        amount = float(r.query_params.get("amount") or 0)
        return JSONResponse({"from": src, "to": dst, "amount": amount,
                             "result": round(amount / RATES[src] * RATES[dst], 2)})

    async def legacy(r: Request) -> Response:
        return PlainTextResponse(";".join(f"{k}={v}" for k, v in RATES.items()))

    async def history(r: Request) -> Response:
        return JSONResponse("no history available")

    async def clear_cache(r: Request) -> Response:
        return JSONResponse({"cleared": True})

    # --- test-only routes ---
    async def echo(r: Request) -> Response:
        body = (await r.body()).decode("utf-8", "replace")
        return JSONResponse({"method": r.method, "path": r.url.path,
                             "query": dict(r.query_params.multi_items()),
                             "headers": {k.lower(): v for k, v in r.headers.items()},
                             "header_list": [[k.lower(), v] for k, v in r.headers.items()],
                             "body": body})

    async def bomb(r: Request) -> Response:
        encoding = r.query_params.get("encoding") or "gzip"
        body = _bomb(encoding, int(r.query_params.get("bytes") or 1000))
        return Response(body, media_type="application/json",
                        headers={"content-encoding": encoding})

    async def redirect(r: Request) -> Response:
        status = int(r.query_params.get("status") or 302)
        return Response(status_code=status, headers={"location": r.query_params["to"]})

    async def big(r: Request) -> Response:
        n = int(r.query_params.get("bytes") or 1000)
        if r.query_params.get("chunked"):
            async def gen():
                yield b'"'
                for _ in range(n // 1024 + 1):
                    yield b"x" * 1024
                    await asyncio.sleep(0)
                yield b'"'
            return StreamingResponse(gen(), media_type="application/json")
        return Response(b'"' + b"x" * n + b'"', media_type="application/json")

    async def slow(r: Request) -> Response:
        await nap(float(r.query_params.get("seconds") or 5))
        return JSONResponse({"slept": True})

    async def long_list(r: Request) -> Response:
        n = int(r.query_params.get("n") or 500)
        return JSONResponse({"count": n, "next": None, "warnings": [], "items": [
            {"id": i, "name": f"item {i}", "note": "", "tags": [], "extra": None,
             "description": "lorem ipsum dolor sit amet " * 4} for i in range(n)]})

    class Recorder:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                hits.append((scope["method"], scope["path"]))
            await self.app(scope, receive, send)

    routes = [
        Route("/books", search_books, methods=["GET"]),
        Route("/books/catalog", slow_catalog, methods=["GET"]),
        Route("/books/{book_id}", get_book, methods=["GET"]),
        Route("/books/{book_id}/loans", borrow, methods=["POST"]),
        Route("/books/{book_id}/cover", cover, methods=["GET"]),
        Route("/weather/current", current, methods=["GET"]),
        Route("/weather/forecast", forecast, methods=["GET"]),
        Route("/weather/alerts", alerts, methods=["GET"]),
        Route("/weather/radar", radar, methods=["GET"]),
        Route("/rates", rates, methods=["GET"]),
        Route("/convert", convert, methods=["GET"]),
        Route("/rates/legacy", legacy, methods=["GET"]),
        Route("/rates/history", history, methods=["GET"]),
        Route("/rates/cache", clear_cache, methods=["DELETE"]),
        Route("/_test/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/_test/redirect", redirect, methods=["GET", "POST"]),
        Route("/_test/big", big, methods=["GET"]),
        Route("/_test/slow", slow, methods=["GET"]),
        Route("/_test/list", long_list, methods=["GET"]),
        Route("/_test/bomb", bomb, methods=["GET"]),
    ]
    return Recorder(Starlette(routes=routes))


class ToolApi(LocalServer):
    """The test API (see the module docstring)."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.hits: list[tuple[str, str]] = []
        self._stopping = threading.Event()
        super().__init__(build_app(self.hits, self._stopping), name="tool-api", tls=tls)

    def stop(self, *, strict: bool = False) -> None:
        self._stopping.set()
        super().stop(strict=strict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def spec(self) -> dict[str, Any]:
        return _spec(self.url)

    @property
    def spec_bytes(self) -> bytes:
        return yaml.safe_dump(self.spec, sort_keys=False).encode()

    def spec_json(self) -> bytes:
        return json.dumps(self.spec).encode()

    def loaded(self):
        from syllabus.services.api_annotator._specs import load_spec
        return load_spec(self.spec_bytes, filename="test-tools.yaml")

    def tools(self):
        return self.loaded().tools

    def tool(self, name: str):
        return self.loaded().tool(name)

    def policy(self, **overrides: Any):
        """A ``CallPolicy`` for this server, which is on loopback: allowed explicitly.
        ``call_timeout`` is 2 s so the hanging operation fails fast."""
        from syllabus.services.api_annotator._caller import CallPolicy
        values: dict[str, Any] = {"allowed_hosts": (self.host,),
                                  "allow_private_hosts": (self.host,), "call_timeout": 2.0}
        values.update(overrides)
        return CallPolicy(**values)


@pytest.fixture
def tool_api() -> Iterator[ToolApi]:
    """A running ``ToolApi`` for one test."""
    with ToolApi() as api:
        yield api
