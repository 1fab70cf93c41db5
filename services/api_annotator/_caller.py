"""The guarded HTTP caller: every real API call the annotator makes goes through it.

``GuardedCaller`` implements ``syllabus.contracts.ToolCaller``. Before any byte goes out,
and again for every redirect it follows (by hand, up to ``max_redirects``), it checks:

* the URL is one unambiguous URL (``parse_url``, the one function that reads every URL
  the caller meets: the spec's server, the built request URL, each redirect
  ``Location``): no backslash, control character or surrounding whitespace; a port of
  ASCII digits from 1 to 65535; a host that is an IPv6 literal (no zone id), four decimal
  IPv4 numbers, or a name of letters, digits, ``-`` and ``_`` (after IDNA). A host that
  other parsers would read as an IPv4 address in another form (``0177.0.0.2``,
  ``0x7f.1``, ``127.1``, ``2130706433``, ``127.0.0.1.``, ``①②⑦.0.0.1``) is refused, not
  normalised. What fails is refused with ``refused: invalid_url: <what> <repr of the URL,
  cut to 200 characters> is not a valid URL: <why>``;
* the scheme is http or https and the URL carries no ``user:password@``;
* the host is on the allow-list (``allowed_hosts``; by default the servers of the spec);
* the host, and every address DNS gives for it, is public: private, loopback, link-local,
  site-local (``fec0::/10``), multicast, reserved, unspecified and shared (CGNAT)
  addresses, and IPv6 addresses that carry one of them (IPv4-mapped, NAT64, 6to4), are
  refused unless the host is on ``allow_private_hosts``;
* a destructive method runs only against a sandbox host: ``DELETE`` always, ``POST``,
  ``PUT`` and ``PATCH`` unless ``allow_write_methods`` lets them run anywhere allowed.

A refusal returns ``ToolResponse(ok=False, error="refused: <why>")`` and sends nothing
(after a redirect: nothing more). Nothing a call meets escapes ``call``: a failure is
that call's ``ToolResponse(ok=False, error=...)`` (``timeout: ...``, ``too large: ...``,
``connection failed: ...``; anything unforeseen ``error: <tool>: <type>: <message>``,
logged with its traceback), so one bad operation never fails its spec.

DNS pinning: the host is resolved once per hop (``getaddrinfo``), every address is
checked, and the request is then sent to the checked address itself (the URL's host is
replaced by the IP; the ``Host`` header and, for https, the TLS server name and the
certificate check keep the real name). So a resolver that answers differently the second
time (DNS rebinding) cannot send the request somewhere that was not checked. The client
ignores proxy environment variables (``trust_env=False``), which would bypass this.

Connections: every origin (scheme, host, port) gets its own connection pool. The URL
carries the pinned IP, and httpcore pools by (scheme, IP, port), so one shared pool would
hand a TLS connection opened (and certificate-checked) for ``a.example.com`` to a request
for ``b.example.com`` on the same address.

Caps: the whole call (DNS, connect, redirects, body) must finish within ``call_timeout``
seconds; the body is streamed and the call stops as soon as it passes
``max_response_bytes``. The caller asks for ``Accept-Encoding: identity`` (an argument
cannot change it) and reads the raw bytes; a server that compresses anyway (gzip,
deflate, br) is inflated by a bounded decompressor that never makes more than the cap, so
a compression bomb (800 bytes of brotli that inflate to 512 MiB) stops at the cap.

Credentials (``credentials: {host: {header: value}}``) are added only to requests whose
host matches that entry, hop by hop, so a redirect to another host never carries them;
and only over https, unless ``credentials_over_http`` names the host. A redirect from
https to plain http after a request that carried credentials is refused. Header names
are merged case-insensitively, credentials winning over arguments (``authorization``
from the credentials replaces an ``Authorization`` argument: only one is sent). Their
values are ``SecretStr`` and are never logged or put into a ``ToolResponse``.
Headers and cookies built from arguments go to the operation's own origin only: a
redirect to another origin (scheme, host or port) drops them.

Observations: a JSON body is compressed the way ToolLLM (Qin et al. 2023, §2.1 "API
responses compression") shortens long responses — empty and null fields dropped, long
lists cut to their first items, long strings shortened — and then, like ToolBench's
``truncate`` method, cut to ``response_token_budget`` tokens (2,048 in the paper). Tokens
are counted approximately (words and punctuation marks), with no tokenizer to download.
The paper had ChatGPT pick the unimportant keys of each API once; the caller has no LLM,
so it drops the keys that carry nothing and shortens by rule (a departure, said here).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import ssl
import time
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx
from pydantic import SecretStr

from syllabus.contracts import ApiTool, ToolResponse

from ..runtime import ApiAnnotatorSettings
from ._specs import server_host

__all__ = [
    "CallPolicy",
    "GuardedCaller",
    "compress_observation",
    "count_tokens",
    "host_matches",
    "non_public_reason",
    "parse_url",
    "truncate_tokens",
]

log = logging.getLogger("syllabus.api_annotator.caller")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
DESTRUCTIVE = frozenset({"DELETE"})
# request headers an argument may not set (the transport owns them)
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                               "upgrade", "te", "trailer", "keep-alive", "proxy-authorization",
                               "cookie", "accept-encoding"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Refused(Exception):
    pass


class _Failed(Exception):
    pass


# --- URLs ------------------------------------------------------------------------------

#: a URL longer than this is refused (servers refuse them too; no log line shows one)
MAX_URL_CHARS = 8192
#: how much of a refused URL's repr the message shows
_SHOWN_CHARS = 200


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _shown(text: object) -> str:
    """``repr(text)``, cut to 200 characters."""
    return _cut(repr(text))


class _InvalidURL(_Refused):
    """A URL that is not one unambiguous URL: refused with the reason ``invalid_url``."""

    def __init__(self, what: str, text: object, why: str, context: str = "") -> None:
        self.why = why
        super().__init__(f"invalid_url: {what} {_shown(text)}{context} is not a valid URL: "
                         f"{why}")


class _BadLocation(Exception):
    """Raised by the response hook, before httpx reads a redirect's ``Location`` itself."""

    def __init__(self, location: str, why: str) -> None:
        super().__init__(why)
        self.location, self.why = location, why


_LABEL = re.compile(r"[a-z0-9_-]{1,63}", re.ASCII)
#: a label WHATWG's URL parser reads as a number (so the host as an IPv4 address)
_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+", re.ASCII | re.IGNORECASE)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def _chars_problem(text: str) -> str | None:
    if text != text.strip():
        return "it starts or ends with whitespace"
    for ch in text:
        if ch == "\\":
            return ("it contains a backslash (browsers read it as '/', other parsers as "
                    "part of the path)")
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return f"it contains a control character ({ch!r})"
    return None


def _host_problem(host: str) -> str | None:
    """Why ``host`` (ASCII, lower case, no brackets) is not one unambiguous host."""
    if not host:
        return "it has no host"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"the host [{host}] is not an IPv6 address"
        return None
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    if _NUMBER.fullmatch(labels[-1]):
        # a last label that is a number makes the host an IPv4 address to a browser and to
        # inet_aton (0177 octal, 0x7f hex, 127.1 short, 2130706433 one number)
        try:
            canonical = str(ipaddress.IPv4Address(host)) == host
        except ValueError:
            canonical = False
        if not canonical:
            return (f"ambiguous host {host!r}: it reads as an IPv4 address in another form "
                    "(octal, hex, short, one number or a trailing dot); write it as four "
                    "decimal numbers")
        return None
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return (f"the host {host!r} is not a host name (letters, digits, '-' and '_' in "
                "dot-separated labels of 1 to 63)")
    return None


def _authority(netloc: str) -> tuple[str, str | None, str | None]:
    """(host, port text or None, problem or None) of a ``netloc`` as written."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host, closed, rest = hostport[1:].partition("]")
        if not closed:
            return host, None, "the IPv6 host has no closing ']'"
        if rest and not rest.startswith(":"):
            return host, None, f"{rest!r} follows the IPv6 host"
        return host, rest[1:] if rest else None, None
    if hostport.count(":") > 1:
        return hostport, None, f"the host {hostport!r} has more than one ':'"
    host, colon, port = hostport.partition(":")
    return host, port if colon else None, None


def parse_url(text: str, what: str = "the URL", *, base: str | None = None) -> httpx.URL:
    """``text`` as an ``httpx.URL``, if it is one unambiguous URL (module docstring);
    with ``base``, ``text`` is a reference (a redirect's ``Location``) resolved against
    it. Raises ``_InvalidURL`` (a refusal: ``invalid_url: <what> <repr(text)> is not a
    valid URL: <why>``), never ``httpx.InvalidURL``, ``ValueError`` or ``UnicodeError``.
    Relative URLs and schemes other than http(s) pass (the caller refuses those by
    name)."""
    if not isinstance(text, str):
        raise _InvalidURL(what, text, f"it is a {type(text).__name__}, not a string")
    if len(text) > MAX_URL_CHARS:
        raise _InvalidURL(what, text, f"it is longer than {MAX_URL_CHARS} characters")
    why = _chars_problem(text)
    if why:
        raise _InvalidURL(what, text, why)
    try:
        full = urljoin(base, text) if base is not None else text
        parts = urlsplit(full)
        web = parts.scheme.lower() in {"http", "https"}
        if parts.netloc or web:
            host, port, why = _authority(parts.netloc)
            if why:
                raise _InvalidURL(what, text, why)
            if "%" in host:
                raise _InvalidURL(what, text, f"the host {host!r} is percent-encoded or "
                                  "carries a zone id")
            if not host.isascii() and _NUMBER.fullmatch(unicodedata.normalize(
                    "NFKC", host).rstrip(".").rpartition(".")[2]):
                raise _InvalidURL(what, text, f"ambiguous host {host!r}: written with "
                                  "digits other than ASCII, it reads as an IPv4 address")
            if host.isascii():
                why = _host_problem(host.lower())
                if why:
                    raise _InvalidURL(what, text, why)
            if port is not None and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
                raise _InvalidURL(what, text, f"the port {port!r} is not a number from 1 "
                                  "to 65535 in ASCII digits")
        if base is not None:
            httpx.URL(text)  # what httpx itself would make of the Location
        url = httpx.URL(full)
        if parts.netloc or web:
            url.host  # noqa: B018 -- decodes an IDNA host; an invalid A-label raises here
            raw_host = url.raw_host.decode("ascii").lower()
            why = _host_problem(raw_host)
            if why:
                raise _InvalidURL(what, text, why)
            if host.isascii() and (ipaddress.ip_address(raw_host) != ipaddress.ip_address(
                    host) if ":" in host else raw_host != host.lower()):
                raise _InvalidURL(what, text, f"parsers disagree on its host ({host!r} or "
                                  f"{raw_host!r})")
            default = {"http": 80, "https": 443}.get(url.scheme)
            if (url.port or default) != (int(port) if port else default):
                raise _InvalidURL(what, text, f"parsers disagree on its port ({port!r} or "
                                  f"{url.port!r})")
    except _InvalidURL:
        raise
    except (httpx.InvalidURL, ValueError, UnicodeError, TypeError) as exc:
        raise _InvalidURL(what, text, f"{type(exc).__name__}: {exc}") from None
    return url


# --- hosts and addresses ---------------------------------------------------------------


def _split_pattern(pattern: str) -> tuple[str, int | None]:
    p = pattern.strip().lower()
    if p.startswith("["):
        host, _, rest = p[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if p.count(":") == 1:
        host, port = p.split(":")
        return host, int(port) if port.isdigit() else None
    return p, None


def host_matches(host: str, port: int, patterns: Iterable[str]) -> bool:
    """Whether ``host:port`` is named by one of ``patterns``: ``host`` (any port),
    ``host:port``, ``[v6]:port``, ``*.domain`` (any subdomain) or ``*`` (anything)."""
    host = host.lower().strip("[]")
    for pattern in patterns:
        if pattern.strip() == "*":
            return True
        p_host, p_port = _split_pattern(pattern)
        if p_port is not None and p_port != port:
            continue
        if p_host.startswith("*."):
            if host.endswith(p_host[1:]):
                return True
        elif p_host == host:
            return True
    return False


_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def non_public_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not a public one (``loopback``, ``private``, ...), else None."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return non_public_reason(ip.ipv4_mapped)
        if ip in _NAT64:
            return non_public_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:  # 6to4 (2002::/16) carries an IPv4 address
            reason = non_public_reason(ip.sixtofour)
            if reason:
                return reason
        if ip.is_site_local:  # fec0::/10, deprecated but still routed privately
            return "site-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-global"
    return None


# --- the policy ------------------------------------------------------------------------


@dataclass(frozen=True)
class CallPolicy:
    """What the caller may do. Build it with ``from_settings``."""

    allowed_hosts: tuple[str, ...]
    allow_private_hosts: tuple[str, ...] = ()
    sandbox_hosts: tuple[str, ...] = ()
    allow_write_methods: frozenset[str] = frozenset()
    #: host pattern -> header -> secret value (never logged; hidden from repr)
    credentials: Mapping[str, Mapping[str, SecretStr]] = field(default_factory=dict,
                                                               repr=False)
    #: host patterns whose credentials may also go over plain http (else https only)
    credentials_over_http: tuple[str, ...] = ()
    max_response_bytes: int = 1024 * 1024
    call_timeout: float = 10.0
    max_redirects: int = 3
    response_token_budget: int = 2048

    @classmethod
    def from_settings(cls, cfg: ApiAnnotatorSettings, *, servers: Sequence[str] = (),
                      allowed_hosts: Sequence[str] = ()) -> CallPolicy:
        """The policy for one spec: the configured allow-list, else ``allowed_hosts`` (from
        the ``ApiSpecSubmitted``), else the ``host:port`` of each of the spec's
        ``servers``."""
        allowed = list(cfg.allowed_hosts) or list(allowed_hosts) or sorted(
            {h for s in servers if (h := server_host(s))})
        if any(m not in WRITE_METHODS for m in cfg.allow_write_methods):
            raise ValueError("allow_write_methods may name POST, PUT and PATCH only; DELETE "
                             "runs against sandbox hosts only")
        return cls(allowed_hosts=tuple(allowed),
                   allow_private_hosts=tuple(cfg.allow_private_hosts),
                   sandbox_hosts=tuple(cfg.sandbox_hosts),
                   allow_write_methods=frozenset(m.upper() for m in cfg.allow_write_methods),
                   credentials={h: dict(v) for h, v in cfg.credentials.items()},
                   credentials_over_http=tuple(cfg.credentials_over_http),
                   max_response_bytes=cfg.max_response_bytes, call_timeout=cfg.call_timeout,
                   max_redirects=cfg.max_redirects,
                   response_token_budget=cfg.response_token_budget)

    def credential_headers(self, host: str, port: int,
                           scheme: str = "https") -> dict[str, str]:
        """The configured credential headers for ``host:port`` (over ``scheme``: plain
        http gets none unless ``credentials_over_http`` names the host)."""
        out: dict[str, str] = {}
        for pattern, headers in self.credentials.items():
            if pattern.strip() != "*" and host_matches(host, port, [pattern]):
                out = _merge_headers(out, {
                    k: v.get_secret_value() if isinstance(v, SecretStr) else str(v)
                    for k, v in headers.items()})
        if out and scheme != "https" and not host_matches(
                host, port, [p for p in self.credentials_over_http if p.strip() != "*"]):
            log.warning("credentials for %s:%d not sent over plain http (name the host in "
                        "api_annotator.credentials_over_http to allow it)", host, port)
            return {}
        return out


def _merge_headers(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``extra`` on top; header names compared case-insensitively (one name
    is sent once, with ``extra``'s value)."""
    replaced = {k.lower() for k in extra}
    out = {k: v for k, v in base.items() if k.lower() not in replaced}
    out.update(extra)
    return out


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return (url.scheme, url.host.lower(),
            url.port or (443 if url.scheme == "https" else 80))


# --- observations ----------------------------------------------------------------------

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def count_tokens(text: str) -> int:
    """Approximate tokens: words and punctuation marks (close to a BPE count for JSON)."""
    return sum(1 for _ in _TOKEN.finditer(text))


#: a "token" longer than this many characters per budgeted token (a base64 blob, one
#: endless word) is cut by characters
MAX_CHARS_PER_TOKEN = 8


def truncate_tokens(text: str, budget: int) -> tuple[str, bool]:
    """``text`` cut after its ``budget``-th token (and to ``budget * 8`` characters at
    most), and whether it was cut."""
    cut = False
    for i, m in enumerate(_TOKEN.finditer(text), start=1):
        if i == budget:
            end = m.end()
            if text[end:].strip():
                text, cut = text[:end], True
            break
    limit = budget * MAX_CHARS_PER_TOKEN
    if len(text) > limit:
        text, cut = text[:limit], True
    return (text + " …", True) if cut else (text, False)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _prune(value: Any) -> Any:
    """Drop null and empty fields (ToolLLM's "unimportant" keys that carry nothing)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _prune(v)
            if v is None or v == "" or v == [] or v == {}:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _shorten(value: Any, max_items: int, max_chars: int) -> Any:
    if isinstance(value, dict):
        return {k: _shorten(v, max_items, max_chars) for k, v in value.items()}
    if isinstance(value, list):
        head = [_shorten(v, max_items, max_chars) for v in value[:max_items]]
        if len(value) > max_items:
            head.append(f"... {len(value) - max_items} more items")
        return head
    if isinstance(value, str) and len(value) > max_chars:
        return value[:max_chars] + "…"
    return value


def compress_observation(value: Any, budget: int) -> tuple[str, bool]:
    """A JSON value as compact text within ``budget`` tokens: as it is if it fits; else
    with empty fields dropped; else with lists and strings shortened step by step; then
    truncated. Returns the text and whether anything was left out."""
    text = _dumps(value)
    if count_tokens(text) <= budget:
        return text, False
    value = _prune(value)
    text = _dumps(value)
    if count_tokens(text) <= budget:
        return text, True
    for max_items, max_chars in ((10, 512), (5, 256), (3, 128), (1, 64)):
        text = _dumps(_shorten(value, max_items, max_chars))
        if count_tokens(text) <= budget:
            return text, True
    return truncate_tokens(text, budget)[0], True


# --- bounded decompression -------------------------------------------------------------


def _too_large(limit: int) -> _Failed:
    return _Failed(f"too large: the response passed the {limit}-byte limit "
                   "(api_annotator.max_response_bytes); stopped reading")


class _BoundedDecoder:
    """Undoes a ``Content-Encoding`` (none, gzip, deflate, br) without ever holding more
    than ``limit`` + 1 decoded bytes: it asks each decompressor for at most what is left
    of the cap, and fails (``too large``) as soon as the output passes it."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        self.limit = limit
        self.size = 0
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        self.kind = codings[0] if len(codings) == 1 else ("" if not codings else "many")
        self._z: Any = None
        self._br: Any = None
        self._deflate_tried = False
        if self.kind in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.kind == "deflate":
            self._z = zlib.decompressobj(zlib.MAX_WBITS)
        elif self.kind == "br":
            try:
                import brotli
            except ImportError:  # pragma: no cover - brotli comes with httpx[brotli]
                brotli = None
            if brotli is None or not hasattr(brotli.Decompressor(), "can_accept_more_data"):
                raise _Failed("the server sent a br-encoded body though identity was asked, "
                              "and no bounded brotli decoder is installed")
            self._br = brotli.Decompressor()
        elif self.kind:
            raise _Failed(f"the server sent a body with Content-Encoding {content_encoding!r}"
                          " though identity was asked; only gzip, deflate and br are decoded")

    def _count(self, out: bytes) -> bytes:
        self.size += len(out)
        if self.size > self.limit:
            raise _too_large(self.limit)
        return out

    def _room(self) -> int:
        return max(1, self.limit - self.size + 1)

    def _inflate(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            try:
                piece = self._z.decompress(data, self._room())
            except zlib.error as exc:
                if self.kind == "deflate" and not self._deflate_tried and not self.size:
                    # "deflate" without the zlib header, as some servers send it
                    self._deflate_tried = True
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise _Failed(f"undecodable body: the {self.kind} body does not decode: "
                              f"{exc}") from None
            self._deflate_tried = True
            out.append(self._count(piece))
            data = self._z.unconsumed_tail
            if self._z.eof:
                break
        return b"".join(out)

    def feed(self, data: bytes) -> bytes:
        if self._z is not None:
            return self._inflate(data)
        if self._br is not None:
            import brotli
            try:
                out = [self._count(self._br.process(data, output_buffer_limit=self._room()))]
                while not self._br.can_accept_more_data():
                    out.append(self._count(self._br.process(
                        b"", output_buffer_limit=self._room())))
            except brotli.error as exc:
                raise _Failed(f"undecodable body: the br body does not decode: {exc}") \
                    from None
            return b"".join(out)
        return self._count(data)

    def flush(self) -> bytes:
        if self._z is not None:
            # every input byte was fed with the cap; what zlib still holds is small
            return self._count(self._z.flush())
        return b""


async def _raw_chunks(response: httpx.Response) -> Any:
    """The body as sent (no decoding). A response already read into memory (the test
    seam, ``httpx.MockTransport``) gives its content."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


# --- the caller ------------------------------------------------------------------------


@dataclass
class _Hop:
    url: str
    method: str
    headers: dict[str, str]
    body: dict[str, Any]


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _dumps(value)
    if isinstance(value, list):
        return ",".join(_param_value(v) for v in value)
    return str(value)


def _path_segment(value: Any) -> str:
    seg = quote(_param_value(value), safe="")
    # "." and ".." would walk the path; encode them
    return seg.replace(".", "%2E") if set(seg) <= {"."} else seg


async def _check_location(response: httpx.Response) -> None:
    """A response hook: a redirect's ``Location`` is read by ``parse_url`` before httpx
    reads it itself (which would raise, or take ``/\\evil.example/`` for a path)."""
    if response.has_redirect_location:
        location = response.headers["location"]
        try:
            parse_url(location, "the redirect Location", base=str(response.request.url))
        except _InvalidURL as exc:
            raise _BadLocation(location, exc.why) from None


class GuardedCaller:
    """The ``ToolCaller`` the api-annotator's plugins receive. Use it as an async context
    manager, or call ``aclose()``. ``transport`` is the test seam httpx offers; the guards
    run in front of it either way. ``verify`` is how certificates are checked (an
    ``ssl.SSLContext`` trusting a test CA in the tests; the system's CAs by default)."""

    def __init__(self, policy: CallPolicy, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.policy = policy
        # a test seam: a given transport is shared by every origin (real calls get one
        # connection pool per origin, see the module docstring)
        self._transport = transport
        #: how server certificates are checked (True: the system's CAs, via httpx)
        self._verify = verify
        self._clients: dict[tuple[str, str, int], httpx.AsyncClient] = {}
        #: calls made, and refused, by this caller
        self.calls = 0
        self.refusals = 0

    async def __aenter__(self) -> GuardedCaller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def _http(self, origin: tuple[str, str, int]) -> httpx.AsyncClient:
        """The client (and connection pool) of one origin: a connection opened for one
        host name is never reused for another that resolves to the same address."""
        client = self._clients.get(origin)
        if client is None:
            client = self._clients[origin] = httpx.AsyncClient(
                transport=self._transport, verify=self._verify, trust_env=False,
                follow_redirects=False, timeout=httpx.Timeout(self.policy.call_timeout),
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
                event_hooks={"response": [_check_location]})
        return client

    async def call(self, tool: ApiTool, arguments: dict[str, Any]) -> ToolResponse:
        started = time.perf_counter()
        self.calls += 1
        try:
            hop = self._build(tool, arguments or {})
            async with asyncio.timeout(self.policy.call_timeout):
                resp = await self._send(hop)
        except _Refused as exc:
            self.refusals += 1
            log.info("refused %s: %s", tool.name, exc)
            return ToolResponse(ok=False, error=f"refused: {exc}",
                                elapsed_seconds=time.perf_counter() - started)
        except _Failed as exc:
            return ToolResponse(ok=False, error=str(exc),
                                elapsed_seconds=time.perf_counter() - started)
        except TimeoutError:
            return ToolResponse(ok=False, error=f"timeout: no complete response within "
                                f"{self.policy.call_timeout:g}s (api_annotator.call_timeout)",
                                elapsed_seconds=time.perf_counter() - started)
        except httpx.TimeoutException:
            return ToolResponse(ok=False, error=f"timeout: no complete response within "
                                f"{self.policy.call_timeout:g}s (api_annotator.call_timeout)",
                                elapsed_seconds=time.perf_counter() - started)
        except (httpx.HTTPError, OSError) as exc:
            return ToolResponse(ok=False, error=f"connection failed: {type(exc).__name__}: "
                                f"{exc}", elapsed_seconds=time.perf_counter() - started)
        except Exception as exc:  # one call's failure, never its spec's (module docstring)
            log.exception("the call of %s failed unexpectedly", tool.name)
            return ToolResponse(ok=False, error=f"error: {tool.name}: {type(exc).__name__}: "
                                f"{exc}", elapsed_seconds=time.perf_counter() - started)
        resp.elapsed_seconds = time.perf_counter() - started
        return resp

    # -- building the request --

    def _build(self, tool: ApiTool, arguments: dict[str, Any]) -> _Hop:
        unknown = sorted(set(arguments) - set(tool.locations))
        if unknown:
            known = ", ".join(sorted(tool.locations)) or "none"
            raise _Failed(f"invalid arguments: {tool.name} has no parameter "
                          f"{', '.join(map(repr, unknown))} (it takes: {known})")
        path = tool.path
        query: list[tuple[str, str]] = []
        headers: dict[str, str] = {}
        cookies: list[str] = []
        body: dict[str, Any] = {}
        for arg, loc in tool.locations.items():
            wire = tool.aliases.get(arg, arg)
            if arg not in arguments:
                if loc == "path":
                    raise _Failed(f"invalid arguments: {tool.name} needs the path "
                                  f"parameter {arg!r}")
                continue
            value = arguments[arg]
            if value is None:
                continue
            if loc == "path":
                path = path.replace("{" + wire + "}", _path_segment(value))
            elif loc == "query":
                values = value if isinstance(value, list) else [value]
                query.extend((wire, _param_value(v)) for v in values)
            elif loc == "header":
                if wire.lower() in _RESERVED_HEADERS:
                    raise _Refused(f"the header {wire!r} cannot be set by an argument")
                text = _param_value(value)
                if "\r" in text or "\n" in text:
                    raise _Failed(f"invalid arguments: header {wire!r} contains a line break")
                if not text.isascii():
                    raise _Failed(f"invalid arguments: header {wire!r} is not ASCII: "
                                  f"{_shown(text)}")
                headers[wire] = text
            elif loc == "cookie":
                cookies.append(f"{wire}={quote(_param_value(value), safe='')}")
            elif loc == "body":
                media = (tool.request_media_type or "application/json").lower()
                if "json" in media:
                    body = {"json": value}
                elif "x-www-form-urlencoded" in media or "multipart" in media:
                    if not isinstance(value, dict):
                        raise _Failed("invalid arguments: the body must be an object of "
                                      "form fields")
                    body = {"data": {k: _param_value(v) for k, v in value.items()}}
                else:
                    body = {"content": value if isinstance(value, str | bytes)
                            else _dumps(value)}
                    headers["Content-Type"] = media
        if "{" in path:
            missing = re.findall(r"\{([^}]+)\}", path)
            raise _Failed(f"invalid arguments: {tool.name} needs the path parameter(s) "
                          f"{', '.join(map(repr, missing))}")
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        server = tool.server.rstrip("/")
        if parse_url(server, f"the server URL of {tool.name}").scheme not in {"http", "https"}:
            raise _Refused(f"the server URL {server!r} of {tool.name} is not an absolute "
                           "http(s) URL (set api_annotator.base_url for relative servers)")
        url = parse_url(server + path, f"the request URL of {tool.name}")
        if query:
            url = url.copy_merge_params(query)
        return _Hop(url=str(url), method=tool.method.upper(), headers=headers, body=body)

    # -- checks --

    def _check_target(self, url: httpx.URL, method: str) -> tuple[str, int]:
        p = self.policy
        if url.scheme not in {"http", "https"}:
            raise _Refused(f"scheme {url.scheme!r} in {url} is not http or https")
        if url.userinfo:
            raise _Refused("the URL carries a user name or password")
        host = url.host.lower()
        if not host:
            raise _Refused(f"{url} has no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if not host_matches(host, port, p.allowed_hosts):
            allowed = ", ".join(p.allowed_hosts) or "none"
            raise _Refused(f"{shown} is not on the allow-list (allowed: {allowed}; "
                           "api_annotator.allowed_hosts)")
        if method in DESTRUCTIVE or (method in WRITE_METHODS
                                     and method not in p.allow_write_methods):
            if not host_matches(host, port, p.sandbox_hosts):
                why = ("DELETE runs only against sandbox hosts" if method in DESTRUCTIVE else
                       f"{method} runs only against sandbox hosts unless "
                       "api_annotator.allow_write_methods includes it")
                raise _Refused(f"{why}; {shown} is not one (api_annotator.sandbox_hosts)")
        elif method not in SAFE_METHODS | WRITE_METHODS | DESTRUCTIVE:
            raise _Refused(f"method {method} is not allowed")
        return host, port

    async def _resolve(self, host: str, port: int) -> str:
        """The address to connect to, after checking every address the host has."""
        private_ok = host_matches(host, port, self.policy.allow_private_hosts)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            reason = non_public_reason(literal)
            if reason and not private_ok:
                raise _Refused(f"{shown} is a {reason} address; allow it explicitly with "
                               "api_annotator.allow_private_hosts")
            return str(literal)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _Failed(f"connection failed: cannot resolve {host}: {exc}") from None
        addresses = []
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%")[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise _Failed(f"connection failed: {host} has no address")
        # IPv4 first (what most local servers bind); the first is the one connected to
        addresses.sort(key=lambda a: a.version)
        for ip in addresses:
            reason = non_public_reason(ip)
            if reason and not private_ok:
                raise _Refused(f"{shown} resolves to {ip}, a {reason} address; allow it "
                               "explicitly with api_annotator.allow_private_hosts")
        return str(addresses[0])  # pinned: the request goes to this checked address

    # -- sending --

    async def _send(self, hop: _Hop) -> ToolResponse:
        p = self.policy
        redirects = 0
        while True:
            try:
                url = parse_url(hop.url, "the redirect target" if redirects
                                else "the request URL")
                host, port = self._check_target(url, hop.method)
                ip = await self._resolve(host, port)
            except _InvalidURL:
                raise
            except _Refused as exc:
                if redirects:
                    raise _Refused(f"redirected to {hop.url}: {exc}") from None
                raise
            credentials = p.credential_headers(host, port, url.scheme)
            # credentials win over argument headers of the same name, in any case
            headers = _merge_headers(hop.headers, credentials)
            if not any(k.lower() == "accept" for k in headers):
                headers["Accept"] = "application/json, */*;q=0.5"
            # set last: no argument (or credential) can ask for a compressed body
            headers = _merge_headers(headers, {"Host": url.netloc.decode("ascii"),
                                               "Accept-Encoding": "identity"})
            extensions: dict[str, Any] = {}
            if url.scheme == "https":
                extensions["sni_hostname"] = host
            pinned = url.copy_with(host=ip)
            client = self._http(_origin(url))
            request = client.build_request(hop.method, pinned, headers=headers,
                                           extensions=extensions, **hop.body)
            try:
                response = await client.send(request, stream=True)
            except _BadLocation as exc:  # from _check_location: nothing more is sent
                raise _InvalidURL("the redirect Location", exc.location, exc.why,
                                  f" from {_cut(hop.url)}") from None
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    if redirects >= p.max_redirects:
                        raise _Failed(f"too many redirects: more than {p.max_redirects} "
                                      "(api_annotator.max_redirects)")
                    redirects += 1
                    location = response.headers["location"]
                    target_url = parse_url(location, "the redirect Location", base=hop.url)
                    target = str(target_url)
                    if credentials and url.scheme == "https" and target_url.scheme == "http":
                        raise _Refused(f"redirected to {target}: a redirect from https to "
                                       "plain http after a request that carried credentials "
                                       "is refused")
                    method = hop.method
                    body = hop.body
                    if response.status_code == 303 and method != "HEAD" or \
                            response.status_code in (301, 302) and method == "POST":
                        method, body = "GET", {}
                    if target_url.scheme in {"http", "https"} and target_url.host and \
                            _origin(target_url) == _origin(url):
                        new_headers = {k: v for k, v in hop.headers.items()
                                       if k.lower() != "content-type" or body}
                    else:
                        # another origin: argument-built headers and cookies stay behind
                        # (only the body's Content-Type goes with the body)
                        new_headers = {k: v for k, v in hop.headers.items()
                                       if k.lower() == "content-type" and body}
                    hop = _Hop(url=target, method=method, headers=new_headers, body=body)
                    continue
                return await self._read(response)
            finally:
                await response.aclose()

    async def _read(self, response: httpx.Response) -> ToolResponse:
        p = self.policy
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > p.max_response_bytes:
            raise _Failed(f"too large: the response is {length} bytes, over the "
                          f"{p.max_response_bytes}-byte limit (api_annotator.max_response_bytes)")
        decoder = _BoundedDecoder("" if response.is_stream_consumed  # already decoded
                                  else response.headers.get("content-encoding", ""),
                                  p.max_response_bytes)
        chunks: list[bytes] = []
        raw = 0
        # raw bytes, inflated here within the cap (httpx would inflate each chunk whole)
        async for chunk in _raw_chunks(response):
            raw += len(chunk)
            if raw > p.max_response_bytes:
                raise _too_large(p.max_response_bytes)
            chunks.append(decoder.feed(chunk))
        chunks.append(decoder.flush())
        data = b"".join(chunks)
        size = decoder.size
        media = (response.headers.get("content-type") or "").split(";")[0].strip().lower()
        encoding = response.charset_encoding or "utf-8"
        try:
            text = data.decode(encoding, errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        parsed: Any = None
        is_json = False
        stripped = text.strip()
        if stripped and ("json" in media or stripped[:1] in "{[\""):
            try:
                parsed = json.loads(stripped)
                is_json = True
            except ValueError:
                is_json = False
        if is_json:
            observation, cut = compress_observation(parsed, p.response_token_budget)
        else:
            observation, cut = truncate_tokens(text, p.response_token_budget)
        status = response.status_code
        ok = 200 <= status < 300
        return ToolResponse(ok=ok, status=status, observation=observation,
                            error=None if ok else f"status {status}",
                            media_type=media or None, truncated=cut, body_bytes=size,
                            json_body=is_json)
