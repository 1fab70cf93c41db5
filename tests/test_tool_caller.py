"""The guarded caller against a real local HTTP API: each refusal (allow-list, private
addresses, after DNS, after a redirect, destructive methods), the size and time caps,
credentials only to their host, and the compression and truncation of observations."""

from __future__ import annotations

import json
import logging
import time
import tracemalloc

import httpx
import pytest
from pydantic import SecretStr

from syllabus.contracts import ApiTool, ToolCaller
from syllabus.services.api_annotator._caller import (
    CallPolicy,
    GuardedCaller,
    compress_observation,
    count_tokens,
    host_matches,
    truncate_tokens,
)
from syllabus.services.runtime import ApiAnnotatorSettings
from tests.tool_api import ToolApi, make_tls_files

pytestmark = pytest.mark.timeout(60)


def _tool(server: str, path: str = "/_test/echo", method: str = "GET", **kw) -> ApiTool:
    return ApiTool(name=kw.pop("name", "echo"), description="test", category="test",
                   method=method, path=path, server=server,
                   response_media_type="application/json", **kw)


async def _call(policy: CallPolicy, tool: ApiTool, args: dict | None = None):
    async with GuardedCaller(policy) as caller:
        assert isinstance(caller, ToolCaller)
        return await caller.call(tool, args or {})


# --- the allow-list --------------------------------------------------------------------


async def test_host_not_on_the_allow_list_is_refused(tool_api):
    policy = tool_api.policy(allowed_hosts=("api.example.com",))
    resp = await _call(policy, _tool(tool_api.url))
    assert not resp.ok and resp.status is None
    assert resp.error.startswith(f"refused: {tool_api.host} is not on the allow-list")
    assert tool_api.hits == []  # nothing was sent


async def test_allow_list_defaults_to_the_spec_servers(tool_api):
    policy = CallPolicy.from_settings(
        ApiAnnotatorSettings(allow_private_hosts=[tool_api.host]),
        servers=[tool_api.url, "https://api.example.com/v1"])
    assert set(policy.allowed_hosts) == {tool_api.host, "api.example.com:443"}
    resp = await _call(policy, tool_api.tool("getBook"), {"book_id": "b1"})
    assert resp.ok and json.loads(resp.observation)["author"] == "Dadant"
    elsewhere = await _call(policy, _tool("https://other.example.com"))
    assert elsewhere.error.startswith("refused: other.example.com:443 is not on the allow-list")


def test_host_patterns():
    assert host_matches("api.example.com", 443, ["api.example.com"])
    assert host_matches("api.example.com", 443, ["api.example.com:443"])
    assert not host_matches("api.example.com", 8443, ["api.example.com:443"])
    assert host_matches("eu.api.example.com", 443, ["*.example.com"])
    assert not host_matches("example.com.evil.net", 443, ["*.example.com", "example.com"])
    assert host_matches("::1", 80, ["[::1]:80"]) and host_matches("x", 1, ["*"])


# --- private, loopback, link-local ----------------------------------------------------


@pytest.mark.parametrize("host,kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("[::1]", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("[fc00::1]", "private"), ("169.254.169.254", "link-local"), ("[fe80::1]", "link-local"),
    ("100.64.0.1", "shared (carrier-grade NAT)"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"),
    ("[::ffff:127.0.0.1]", "loopback"), ("[64:ff9b::a9fe:a9fe]", "link-local"),
    # 6to4 carries an IPv4 address (here 127.0.0.1, 10.0.0.1); fec0::/10 is site-local
    ("[2002:7f00:1::]", "loopback"), ("[2002:a00:1::5]", "private"),
    ("[fec0::1]", "site-local"),
])
async def test_non_public_addresses_are_refused(host, kind):
    policy = CallPolicy(allowed_hosts=("*",), call_timeout=2)
    resp = await _call(policy, _tool(f"http://{host}:8080"))
    assert resp.error.startswith("refused: ") and f"a {kind} address" in resp.error, resp.error
    assert "allow_private_hosts" in resp.error


async def test_loopback_allowed_explicitly(tool_api):
    resp = await _call(tool_api.policy(), _tool(tool_api.url))
    assert resp.ok and resp.status == 200 and resp.json_body
    assert json.loads(resp.observation)["method"] == "GET"


async def test_refused_after_dns_resolution(tool_api):
    """``localhost`` is a name, allowed by the allow-list, that resolves to loopback."""
    server = f"http://localhost:{tool_api.port}"
    policy = tool_api.policy(allowed_hosts=(f"localhost:{tool_api.port}",),
                             allow_private_hosts=())
    resp = await _call(policy, _tool(server))
    assert resp.error.startswith(f"refused: localhost:{tool_api.port} resolves to 127.0.0.1, "
                                 "a loopback address"), resp.error
    assert tool_api.hits == []
    allowed = tool_api.policy(allowed_hosts=("localhost",), allow_private_hosts=("localhost",))
    resp = await _call(allowed, _tool(server))
    assert resp.ok, resp.error
    # pinned to the checked address, with the name kept in the Host header
    assert json.loads(resp.observation)["headers"]["host"] == f"localhost:{tool_api.port}"


# --- redirects -------------------------------------------------------------------------


def _redirect(tool_api, to: str, status: int = 302) -> tuple[ApiTool, dict]:
    tool = _tool(tool_api.url, "/_test/redirect", name="redirect",
                 parameters={"type": "object", "properties": {
                     "to": {"type": "string"}, "status": {"type": "integer"}}},
                 locations={"to": "query", "status": "query"})
    return tool, {"to": to, "status": status}


async def test_redirect_to_a_host_not_on_the_allow_list_is_refused(tool_api):
    tool, args = _redirect(tool_api, f"http://localhost:{tool_api.port}/_test/echo")
    resp = await _call(tool_api.policy(), tool, args)
    assert resp.error.startswith(f"refused: redirected to http://localhost:{tool_api.port}"
                                 f"/_test/echo: localhost:{tool_api.port} is not on the "
                                 "allow-list"), resp.error
    assert tool_api.hits == [("GET", "/_test/redirect")]


async def test_redirect_to_a_private_address_is_refused_after_resolution(tool_api):
    tool, args = _redirect(tool_api, f"http://localhost:{tool_api.port}/_test/echo")
    policy = tool_api.policy(allowed_hosts=(tool_api.host, "localhost"))
    resp = await _call(policy, tool, args)
    assert "redirected to" in resp.error and "resolves to 127.0.0.1, a loopback address" \
        in resp.error, resp.error
    assert tool_api.hits == [("GET", "/_test/redirect")]


async def test_redirect_to_cloud_metadata_is_refused(tool_api):
    tool, args = _redirect(tool_api, "http://169.254.169.254/latest/meta-data/")
    policy = tool_api.policy(allowed_hosts=("*",))
    resp = await _call(policy, tool, args)
    assert resp.error.startswith("refused: redirected to http://169.254.169.254/latest/"
                                 "meta-data/: 169.254.169.254:80 is a link-local address")


async def test_allowed_redirect_is_followed_and_capped(tool_api):
    tool, args = _redirect(tool_api, "/_test/echo?x=1", status=307)
    resp = await _call(tool_api.policy(), tool, args)
    assert resp.ok and json.loads(resp.observation)["query"] == {"x": "1"}
    loop = "/_test/redirect?to=/_test/redirect%3Fto%3D/_test/echo"
    tool, args = _redirect(tool_api, loop)
    resp = await _call(tool_api.policy(max_redirects=1), tool, args)
    assert resp.error.startswith("too many redirects: more than 1")


# --- destructive methods ---------------------------------------------------------------


async def test_delete_runs_only_against_sandbox_hosts(tool_api):
    tool = tool_api.tool("clearRateCache")
    resp = await _call(tool_api.policy(allow_write_methods=frozenset({"POST", "PUT", "PATCH"})),
                       tool)
    assert resp.error == (f"refused: DELETE runs only against sandbox hosts; {tool_api.host} "
                          "is not one (api_annotator.sandbox_hosts)")
    assert tool_api.hits == []
    resp = await _call(tool_api.policy(sandbox_hosts=(tool_api.host,)), tool)
    assert resp.ok and json.loads(resp.observation) == {"cleared": True}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_writes_run_only_against_sandboxes_unless_allowed(tool_api, method):
    tool = _tool(tool_api.url, method=method, locations={"body": "body"},
                 request_media_type="application/json")
    args = {"body": {"a": 1}}
    resp = await _call(tool_api.policy(), tool, args)
    assert resp.error.startswith(f"refused: {method} runs only against sandbox hosts unless "
                                 "api_annotator.allow_write_methods includes it")
    assert tool_api.hits == []
    for policy in (tool_api.policy(allow_write_methods=frozenset({method})),
                   tool_api.policy(sandbox_hosts=(tool_api.host,))):
        resp = await _call(policy, tool, args)
        echoed = json.loads(resp.observation)
        assert resp.ok and echoed["method"] == method and json.loads(echoed["body"]) == {"a": 1}


def test_delete_cannot_be_allowed_outside_sandboxes():
    with pytest.raises(ValueError):
        ApiAnnotatorSettings(allow_write_methods=["DELETE"])


# --- size and time caps ----------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
async def test_response_size_cap(tool_api, chunked):
    tool = _tool(tool_api.url, "/_test/big", locations={"bytes": "query", "chunked": "query"})
    args = {"bytes": 200_000, **({"chunked": 1} if chunked else {})}
    resp = await _call(tool_api.policy(max_response_bytes=50_000), tool, args)
    assert not resp.ok and resp.error.startswith("too large: the response ")
    assert ("stopped reading" in resp.error) is chunked
    small = await _call(tool_api.policy(max_response_bytes=50_000), tool, {"bytes": 1000})
    assert small.ok and small.body_bytes == 1002


async def test_time_cap(tool_api):
    tool = _tool(tool_api.url, "/_test/slow", locations={"seconds": "query"})
    started = time.perf_counter()
    resp = await _call(tool_api.policy(call_timeout=0.5), tool, {"seconds": 5})
    assert time.perf_counter() - started < 2.5
    assert not resp.ok and resp.error.startswith("timeout: no complete response within 0.5s")


# --- credentials -----------------------------------------------------------------------


async def test_credentials_go_only_to_their_host(tool_api, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-value-123"
    localhost = f"localhost:{tool_api.port}"
    policy = tool_api.policy(
        allowed_hosts=(tool_api.host, localhost),
        allow_private_hosts=(tool_api.host, localhost),
        credentials={tool_api.host: {"X-Api-Key": SecretStr(secret)}},
        credentials_over_http=(tool_api.host,))  # the test server speaks plain http
    assert secret not in repr(policy)
    own = await _call(policy, _tool(tool_api.url))
    assert json.loads(own.observation)["headers"]["x-api-key"] == secret
    other = await _call(policy, _tool(f"http://{localhost}"))
    assert "x-api-key" not in json.loads(other.observation)["headers"]
    # and not after a redirect to the other host either
    tool, args = _redirect(tool_api, f"http://{localhost}/_test/echo")
    redirected = await _call(policy, tool, args)
    assert redirected.ok and "x-api-key" not in json.loads(redirected.observation)["headers"]
    assert secret not in caplog.text


async def test_credentials_from_settings_are_secret():
    cfg = ApiAnnotatorSettings(credentials={"api.example.com": {"X-Api-Key": "topsecret"}})
    policy = CallPolicy.from_settings(cfg, servers=["https://api.example.com"])
    assert "topsecret" not in repr(cfg) and "topsecret" not in repr(policy)
    assert policy.credential_headers("api.example.com", 443) == {"X-Api-Key": "topsecret"}
    assert policy.credential_headers("evil.example.com", 443) == {}


async def test_credentials_go_over_https_only_unless_allowed(tool_api, caplog):
    secret = "s3cret-value-456"
    policy = tool_api.policy(credentials={tool_api.host: {"X-Api-Key": SecretStr(secret)}})
    plain = await _call(policy, _tool(tool_api.url))
    assert plain.ok and "x-api-key" not in json.loads(plain.observation)["headers"]
    assert "not sent over plain http" in caplog.text and secret not in caplog.text
    assert policy.credential_headers("127.0.0.1", tool_api.port, "https") == {
        "X-Api-Key": secret}
    assert CallPolicy.from_settings(ApiAnnotatorSettings(
        credentials_over_http=["api.example.com"])).credentials_over_http == (
        "api.example.com",)


@pytest.fixture
def tls_api(tmp_path):
    """The test API over https, with a certificate for ``localhost`` only."""
    tls = make_tls_files(tmp_path / "tls")
    with ToolApi(tls=tls) as api:
        yield api


async def test_credentials_over_https_and_no_downgrade_to_http(tls_api, tool_api):
    secret = "s3cret-value-789"
    https = f"localhost:{tls_api.port}"
    policy = CallPolicy(allowed_hosts=(https, tool_api.host),
                        allow_private_hosts=(https, tool_api.host), call_timeout=5,
                        credentials={"localhost": {"X-Api-Key": SecretStr(secret)}})
    async with GuardedCaller(policy, verify=tls_api.tls.context()) as caller:
        own = await caller.call(_tool(f"https://{https}"), {})
        assert own.ok, own.error
        assert json.loads(own.observation)["headers"]["x-api-key"] == secret
        # https -> http after a request that carried credentials: refused, nothing sent
        tool, args = _redirect(tls_api, f"{tool_api.url}/_test/echo")
        tool = tool.model_copy(update={"server": f"https://{https}"})
        resp = await caller.call(tool, args)
    assert resp.error == (f"refused: redirected to {tool_api.url}/_test/echo: a redirect from "
                          "https to plain http after a request that carried credentials is "
                          "refused"), resp.error
    assert tool_api.hits == []


async def test_a_tls_connection_is_not_reused_for_another_host_name(tls_api):
    """``localhost`` and ``127.0.0.1`` are the same address; the certificate names only
    ``localhost``. A pooled connection to 127.0.0.1 opened for ``localhost`` must not
    carry the request for ``127.0.0.1``, which must fail its own certificate check."""
    port = tls_api.port
    hosts = (f"localhost:{port}", f"127.0.0.1:{port}")
    policy = CallPolicy(allowed_hosts=hosts, allow_private_hosts=hosts, call_timeout=5)
    async with GuardedCaller(policy, verify=tls_api.tls.context()) as caller:
        first = await caller.call(_tool(f"https://localhost:{port}"), {})
        assert first.ok, first.error
        other = await caller.call(_tool(f"https://127.0.0.1:{port}"), {})
        again = await caller.call(_tool(f"https://localhost:{port}"), {})
    assert not other.ok and other.error.startswith("connection failed: ConnectError"), other
    assert "certificate" in other.error.lower() or "match" in other.error.lower(), other.error
    assert again.ok
    assert tls_api.hits == [("GET", "/_test/echo")] * 2


async def test_redirect_to_another_origin_drops_argument_headers_and_cookies(tool_api):
    localhost = f"localhost:{tool_api.port}"
    policy = tool_api.policy(allowed_hosts=(tool_api.host, localhost),
                             allow_private_hosts=(tool_api.host, localhost))
    tool = _tool(tool_api.url, "/_test/redirect", name="redirect",
                 locations={"to": "query", "status": "query", "X-Token": "header",
                            "sid": "cookie"})
    args = {"X-Token": "arg-secret", "sid": "cookie-secret", "status": 307}
    same = await _call(policy, tool, {**args, "to": "/_test/echo"})
    headers = json.loads(same.observation)["headers"]
    assert headers["x-token"] == "arg-secret" and headers["cookie"] == "sid=cookie-secret"
    other = await _call(policy, tool, {**args, "to": f"http://{localhost}/_test/echo"})
    assert other.ok, other.error
    headers = json.loads(other.observation)["headers"]
    assert "x-token" not in headers and "cookie" not in headers


async def test_credentials_and_argument_headers_merge_case_insensitively(tool_api):
    policy = tool_api.policy(credentials={tool_api.host: {
        "authorization": SecretStr("Bearer from-config")}},
        credentials_over_http=(tool_api.host,))
    tool = _tool(tool_api.url, locations={"Authorization": "header", "ACCEPT": "header"})
    resp = await _call(policy, tool, {"Authorization": "Bearer from-argument",
                                      "ACCEPT": "text/plain"})
    lines = json.loads(resp.observation)["header_list"]
    assert [v for k, v in lines if k == "authorization"] == ["Bearer from-config"]
    assert [v for k, v in lines if k == "accept"] == ["text/plain"]


# --- compression -----------------------------------------------------------------------


async def test_identity_is_asked_and_cannot_be_changed(tool_api):
    resp = await _call(tool_api.policy(), _tool(tool_api.url))
    assert json.loads(resp.observation)["headers"]["accept-encoding"] == "identity"
    tool = _tool(tool_api.url, locations={"accept-encoding": "header"})
    resp = await _call(tool_api.policy(), tool, {"accept-encoding": "br"})
    assert resp.error == "refused: the header 'accept-encoding' cannot be set by an argument"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_compressed_bodies_are_inflated_within_the_cap(tool_api, encoding):
    """A server that compresses although identity was asked: a small body is decoded; a
    bomb (about 16 KiB that inflates to 16 MiB) stops at the cap without ever holding
    the inflated body in memory."""
    tool = _tool(tool_api.url, "/_test/bomb", locations={"encoding": "query",
                                                         "bytes": "query"})
    policy = tool_api.policy(max_response_bytes=100_000)
    small = await _call(policy, tool, {"encoding": encoding, "bytes": 1000})
    assert small.ok and small.body_bytes == 1002 and json.loads(small.observation) == "x" * 1000
    big = {"encoding": encoding, "bytes": 16 << 20}
    async with httpx.AsyncClient() as raw:  # the server makes (and keeps) the bomb first
        made = await raw.get(f"{tool_api.url}/_test/bomb", params=big)
    assert len(made.content) == (16 << 20) + 2  # httpx itself inflates it all
    tracemalloc.start()
    try:
        resp = await _call(policy, tool, big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not resp.ok and resp.error.startswith("too large: the response passed the "
                                                 "100000-byte limit"), resp.error
    assert peak < 4 << 20, peak


# --- arguments -------------------------------------------------------------------------


async def test_path_arguments_cannot_walk_the_path(tool_api):
    resp = await _call(tool_api.policy(), tool_api.tool("getBook"),
                       {"book_id": "../_test/echo"})
    assert resp.status == 404 and tool_api.hits[-1][1].startswith("/books/")
    resp = await _call(tool_api.policy(), tool_api.tool("getBook"), {"book_id": ".."})
    assert resp.status == 404


async def test_invalid_arguments_send_nothing(tool_api):
    resp = await _call(tool_api.policy(), tool_api.tool("getBook"), {"isbn": "1"})
    assert resp.error.startswith("invalid arguments: getBook has no parameter 'isbn'")
    resp = await _call(tool_api.policy(), tool_api.tool("getBook"), {})
    assert resp.error == "invalid arguments: getBook needs the path parameter 'book_id'"
    assert tool_api.hits == []


async def test_reserved_headers_cannot_be_set(tool_api):
    tool = _tool(tool_api.url, locations={"Host": "header"})
    resp = await _call(tool_api.policy(), tool, {"Host": "evil.example.com"})
    assert resp.error == "refused: the header 'Host' cannot be set by an argument"


async def test_query_and_header_arguments(tool_api):
    tool = _tool(tool_api.url, locations={"q": "query", "tags": "query", "X-Trace": "header",
                                          "flag": "query", "query_q": "query"},
                 aliases={"query_q": "qq"})
    resp = await _call(tool_api.policy(), tool, {"q": "bees", "tags": ["a", "b"], "flag": True,
                                                "X-Trace": "t-1", "query_q": "x"})
    echoed = json.loads(resp.observation)
    assert echoed["query"] == {"q": "bees", "tags": "b", "flag": "true", "qq": "x"}
    assert echoed["headers"]["x-trace"] == "t-1"


# --- observations ----------------------------------------------------------------------


async def test_long_json_is_compressed_then_truncated(tool_api):
    tool = _tool(tool_api.url, "/_test/list", locations={"n": "query"})
    resp = await _call(tool_api.policy(response_token_budget=300), tool, {"n": 500})
    assert resp.ok and resp.truncated and resp.json_body and resp.body_bytes > 50_000
    assert count_tokens(resp.observation) <= 300
    value = json.loads(resp.observation)  # shortened, still JSON
    assert value["count"] == 500 and "next" not in value and "warnings" not in value
    assert "note" not in value["items"][0] and "extra" not in value["items"][0]
    assert value["items"][-1].endswith("more items")
    small = await _call(tool_api.policy(response_token_budget=300), tool, {"n": 1})
    assert not small.truncated and json.loads(small.observation)["items"][0]["note"] == ""


def test_compression_steps():
    value = {"a": None, "b": [], "c": "x" * 10}
    assert compress_observation(value, 100) == (json.dumps(value, separators=(",", ":")),
                                                False)
    text, cut = compress_observation({"words": " ".join(["w"] * 5000)}, 50)
    assert cut and count_tokens(text) <= 51
    text, cut = truncate_tokens("one two three four", 2)
    assert (text, cut) == ("one two …", True)
    assert truncate_tokens("one two", 2) == ("one two", False)
    # one endless "word" is cut by characters
    text, cut = truncate_tokens("x" * 10_000, 10)
    assert cut and len(text) == 80 + 2


async def test_text_is_truncated_to_the_budget(tool_api):
    resp = await _call(tool_api.policy(response_token_budget=20), tool_api.tool("legacyRates"))
    assert resp.ok and not resp.json_body and resp.media_type == "text/plain"
    assert resp.truncated and resp.observation.endswith(" …")
    assert count_tokens(resp.observation) <= 21


async def test_dns_pinning_connects_to_the_checked_address():
    """The request goes to the address that was checked, not to a second lookup: the URL
    carries the IP, the Host header and the TLS server name keep the name."""
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    policy = CallPolicy(allowed_hosts=("localhost",), allow_private_hosts=("localhost",))
    async with GuardedCaller(policy, transport=httpx.MockTransport(handler)) as caller:
        for server in ("http://localhost:8123", "https://localhost"):
            resp = await caller.call(_tool(server), {})
            assert resp.ok, resp.error
    plain, tls = seen
    assert (plain.url.host, plain.url.port, plain.headers["host"]) == (
        "127.0.0.1", 8123, "localhost:8123")
    assert (tls.url.host, tls.headers["host"], tls.extensions["sni_hostname"]) == (
        "127.0.0.1", "localhost", "localhost")


# --- URLs that are not one unambiguous http(s) URL -------------------------------------


_CIRCLED = dict(zip("0123456789", "⓪①②③④⑤⑥⑦⑧⑨", strict=True))
_FULLWIDTH = dict(zip("0123456789", "０１２３４５６７８９", strict=True))


def _digits(number: int, table: dict[str, str]) -> str:
    return "".join(table[d] for d in str(number))


@pytest.fixture
def listener():
    """``open(address)``: a real listening TCP socket on ``address`` (a loopback IPv4
    address), never accepted from; ``connected(sock)`` says whether anything connected to
    it (the kernel completes the handshake and queues it, so a pending accept shows it)."""
    import select
    import socket

    socks: list[socket.socket] = []

    def open_(address: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((address, 0))
        sock.listen(8)
        socks.append(sock)
        return sock

    def connected(sock: socket.socket) -> bool:
        return bool(select.select([sock], [], [], 0.05)[0])

    open_.connected = connected  # type: ignore[attr-defined]
    yield open_
    for sock in socks:
        sock.close()


# (server URL made from the listener's port, the address the ambiguous form would reach)
_AMBIGUOUS_SERVERS = [
    pytest.param(lambda p: f"http://0177.0.0.2:{p}", "127.0.0.2", id="octal-host"),
    pytest.param(lambda p: f"http://0x7f.1:{p}", "127.0.0.1", id="hex-short-host"),
    pytest.param(lambda p: f"http://127.1:{p}", "127.0.0.1", id="short-host"),
    pytest.param(lambda p: f"http://2130706433:{p}", "127.0.0.1", id="integer-host"),
    pytest.param(lambda p: f"http://127.0.0.1.:{p}", "127.0.0.1", id="trailing-dot-ip"),
    pytest.param(lambda p: f"http://127.0.0.1:{p}.", "127.0.0.1", id="trailing-dot-port"),
    pytest.param(lambda p: f"http://①②⑦.0.0.1:{p}", "127.0.0.1", id="circled-host"),
    pytest.param(lambda p: f"http://127.0.0.1:{_digits(p, _CIRCLED)}", "127.0.0.1",
                 id="circled-port"),
    pytest.param(lambda p: f"http://127.0.0.1:{_digits(p, _FULLWIDTH)}", "127.0.0.1",
                 id="fullwidth-port"),
    pytest.param(lambda p: f"http://127.0.0.1:{p}\\x", "127.0.0.1", id="backslash"),
    pytest.param(lambda p: f"http://127.0.0.1:{p + 65536}", "127.0.0.1", id="port-over-65535"),
    pytest.param(lambda p: f"http://[::1:{p}", "127.0.0.1", id="unclosed-bracket"),
]


@pytest.mark.parametrize("make,address", _AMBIGUOUS_SERVERS)
async def test_a_bad_server_url_is_a_refusal_and_connects_nowhere(listener, make, address):
    """Everything is allowed (any host, private too), so only the URL check can stop the
    call: the URL is refused as ``invalid_url``, named, and nothing connects to the address
    the ambiguous form would reach (a real listening socket there)."""
    sock = listener(address)
    server = make(sock.getsockname()[1])
    policy = CallPolicy(allowed_hosts=("*",), allow_private_hosts=("*",), call_timeout=1.0)
    resp = await _call(policy, _tool(server))
    assert not resp.ok and resp.status is None
    assert resp.error.startswith("refused: invalid_url: "), resp.error
    assert repr(server.rstrip("/"))[:60] in resp.error  # the URL is named, as repr
    assert not listener.connected(sock), "the ambiguous URL was connected to"


@pytest.mark.parametrize("url,why", [
    ("http://0177.0.0.2:8080/x", "ambiguous host '0177.0.0.2'"),
    ("http://0x7f.1/x", "ambiguous host '0x7f.1'"),
    ("http://127.1/x", "ambiguous host '127.1'"),
    ("http://1.2.3.4.5/", "ambiguous host '1.2.3.4.5'"),
    ("http://example.com:18765./", "port '18765.'"),
    ("http://example.com:0/", "port '0'"),
    ("http://exa mple.com/", "host"),
    ("http://ex%41mple.com/", "host"),
    ("http://example.com/\tx", "control character"),
    ("http://example.com/a\\b", "backslash"),
    (" http://example.com/", "whitespace"),
    ("http://[fe80::1%25eth0]/", "host"),
    ("http://xn--zz.example/", "IDNAError"),
])
def test_parse_url_refuses_ambiguous_urls_with_the_reason(url, why):
    from syllabus.services.api_annotator._caller import _Refused, parse_url

    with pytest.raises(_Refused) as info:
        parse_url(url, "the URL")
    message = str(info.value)
    assert message.startswith(f"invalid_url: the URL {url!r} is not a valid URL"), message
    assert why in message, message


@pytest.mark.parametrize("url,host,port", [
    ("http://127.0.0.1:8080/x?q=1", "127.0.0.1", 8080),
    ("https://api.example.com/v1/", "api.example.com", None),
    ("http://[::1]:8080/", "::1", 8080),
    ("https://bücher.example/", "bücher.example", None),
    ("http://xn--bcher-kva.example/", "bücher.example", None),
    ("http://API.Example.COM:8443", "api.example.com", 8443),
    ("http://my_host.internal:1/", "my_host.internal", 1),
    ("http://example.com./", "example.com.", None),
    ("http://10.0.0.1:65535/", "10.0.0.1", 65535),
])
def test_parse_url_keeps_ordinary_urls(url, host, port):
    from syllabus.services.api_annotator._caller import parse_url

    parsed = parse_url(url, "the URL")
    assert (parsed.host, parsed.port) == (host, port)


@pytest.mark.parametrize("location", [
    "http:\\\\127.0.0.1\\x", "/\\evil.example/", "\\\\evil.example\\x",
    "http://0177.0.0.1:{port}/_test/echo", "http://127.1:{port}/_test/echo",
    "http://127.0.0.1:{port}./_test/echo", "http://[::1/_test/echo",
])
async def test_a_bad_redirect_location_is_a_refusal_of_that_call(tool_api, location):
    """A real server answers with a ``Location`` that parsers read differently (a browser
    takes ``/\\evil.example/`` for ``//evil.example/``; ``0177.0.0.1`` is 127.0.0.1 to
    ``inet_aton``): refused as ``invalid_url``, and only the first request was sent, though
    every host (private too) is allowed."""
    location = location.replace("{port}", str(tool_api.port))
    tool, args = _redirect(tool_api, location)
    policy = tool_api.policy(allowed_hosts=("*",), allow_private_hosts=("*",))
    resp = await _call(policy, tool, args)
    assert not resp.ok and resp.status is None
    assert resp.error.startswith(f"refused: invalid_url: the redirect Location {location!r} "
                                 f"from {tool_api.url}/_test/redirect?"), resp.error
    assert tool_api.hits == [("GET", "/_test/redirect")]
    # the caller goes on: the next call through it works
    async with GuardedCaller(policy) as caller:
        assert (await caller.call(tool, args)).error == resp.error
        ok = await caller.call(_tool(tool_api.url), {})
    assert ok.ok, ok.error


async def test_an_unexpected_error_in_one_call_is_that_calls_failure(tool_api):
    """Whatever goes wrong inside one call (here a transport that raises something no
    guard expects) comes back as that call's failure, and the caller goes on."""

    class Broken(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            raise RuntimeError("the transport broke")

    policy = tool_api.policy()
    async with GuardedCaller(policy, transport=Broken()) as caller:
        resp = await caller.call(_tool(tool_api.url), {})
    assert not resp.ok and resp.status is None
    assert resp.error == "error: echo: RuntimeError: the transport broke"
    async with GuardedCaller(policy) as caller:
        assert (await caller.call(_tool(tool_api.url), {})).ok


async def test_a_non_ascii_header_argument_is_an_invalid_argument(tool_api):
    tool = _tool(tool_api.url, locations={"X-Name": "header"})
    resp = await _call(tool_api.policy(), tool, {"X-Name": "Zoë €"})
    assert resp.error == "invalid arguments: header 'X-Name' is not ASCII: 'Zoë €'"
    assert tool_api.hits == []
