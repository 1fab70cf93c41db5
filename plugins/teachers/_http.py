"""What the HTTP teachers (``openai``, ``triton``) share: the client, one POST, and which
failures are worth retrying. Imports httpx, so only those two import this module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from syllabus.contracts import TeacherError

from ._common import snippet

#: besides 5xx, the HTTP statuses worth retrying
RETRYABLE_STATUS = frozenset({408, 429})

#: a teacher's ``_error(detail, *, retryable, status=None, ...)``
ErrorMaker = Callable[..., TeacherError]


def retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def http_client(kind: str, headers: Mapping[str, str], timeout: float,
                concurrency: int) -> httpx.AsyncClient:
    """A client whose pool fits the runtime's concurrency; ``headers`` go with every call.
    Waiting for a pooled connection is not timed: the runtime bounds concurrency."""
    return httpx.AsyncClient(
        headers={"Accept": "application/json", "User-Agent": f"syllabus-{kind}-teacher",
                 **headers},
        timeout=httpx.Timeout(timeout, pool=None),
        limits=httpx.Limits(max_connections=concurrency,
                            max_keepalive_connections=concurrency),
        follow_redirects=False,
    )


async def post_json(client: httpx.AsyncClient, url: str, body: Any, *, timeout: float,
                    error: ErrorMaker) -> httpx.Response:
    """The response to ``POST url`` with a JSON body; a failure to get one is ``error``'s
    ``TeacherError`` (time-outs and dropped connections retryable, a bad URL not)."""
    try:
        return await client.post(url, json=body)
    except httpx.TimeoutException as exc:
        raise error(f"timed out after {timeout:g} s ({type(exc).__name__})",
                    retryable=True) from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        raise error(f"request failed: {type(exc).__name__}: {exc}", retryable=False) from exc
    except httpx.TransportError as exc:
        raise error(f"connection failed: {type(exc).__name__}: {exc}", retryable=True) from exc


def response_json(response: httpx.Response, error: ErrorMaker,
                  shorten: Callable[[str], str] = snippet) -> Any:
    """The response's JSON body; one that is not JSON is a retryable ``error``."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        status = response.status_code
        raise error(f"malformed response (HTTP {status}, not JSON): {shorten(response.text)}",
                    retryable=True, status=status) from None
