"""OpenAPI specs in: parse (YAML or JSON), validate, resolve ``$ref``s, and turn every
operation into an ``ApiTool`` (ToolLLM, Qin et al. 2023, §2.1: each API becomes a function
with a name, a description, a parameter schema and a category).

Shared by two services, so it lives in the runtime: ingest sniffs and validates a spec
when it is submitted, the api-annotator (``syllabus.services.api_annotator._specs``, its
name for this module) loads it into tools.

Accepted: OpenAPI 3.0, 3.1 and Swagger 2.0, in YAML or JSON. A spec is hostile input, and
reading one opens no file and no socket:

- nesting is bounded (``MAX_DEPTH``) before a parser recurses: JSON text is pre-scanned for
  bracket depth, the YAML composer counts its depth, and the parsed value, and the value
  with its ``$ref``s resolved, are checked again (YAML aliases and ``$ref`` chains nest
  deeper than the text shows); a ``RecursionError`` anywhere becomes a ``SpecError``;
- every ``$ref`` (and ``$dynamicRef``/``$recursiveRef``) whose value does not start with
  ``#`` is refused, wherever it stands, also inside literal values such as ``default``,
  ``example`` or ``enum``: openapi-spec-validator follows a ``$ref`` in a ``default``, and
  jsonschema-path would fetch it with ``urlopen``;
- the validator is given resolver handlers that claim every URI scheme and refuse, so
  even a reference that got past that check (or a base URI changed with ``$id``) cannot
  reach the disk or the network;
- a rejection never quotes a value: where a validator's message quotes the value it is
  about (``'...' is not of type 'object'``), the quote is replaced by "the value at this
  path (a string)"; every message is capped at ``MAX_MESSAGE`` characters and every JSON
  path at ``MAX_PATH``.

Local references (``#/...``) are checked here first, so a dangling one is reported with
its path. Validation uses ``openapi-spec-validator`` with the Python ``jsonschema``
backend (pinned: with ``jsonschema-rs`` installed the library would switch backends, and
its messages and error paths differ). A problem is a ``SpecError`` whose message names
the file and the JSON path of the problem::

    hive-api.yaml: paths./hives/{id}.get.parameters[0]: 'in' is a required property

``$ref``s are resolved recursively; a reference that leads back into itself (a tree of
``Comment`` whose ``replies`` are ``Comment``s) is cut at the second visit and replaced by a
stub that says what it refers to, so the tool's schema stays finite.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate, count
from operator import sub
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import yaml

from syllabus.contracts import ApiTool, sha256_hex

__all__ = [
    "LoadedSpec",
    "SpecError",
    "is_api_spec",
    "json_path",
    "load_spec",
    "server_host",
]

#: an OpenAI function name
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: resolved nodes a spec may expand to (YAML aliases and $refs multiply); past it, refuse
MAX_NODES = 500_000
#: how deeply values may nest (in the text, once parsed, and once $refs are resolved).
#: Real specs stay far below; the bound keeps every recursive step (the parsers, the
#: validator at about five frames a level, the resolver) well inside Python's recursion
#: limit, so a deep spec is a SpecError and never a RecursionError.
MAX_DEPTH = 128
#: a SpecError's message (the part after the JSON path) is cut to this many characters,
#: and its JSON path (a key may be long) loses its middle past MAX_PATH
MAX_MESSAGE = 300
MAX_PATH = 500
SNIFF_BYTES = 8192
# keys a tool's JSON schema does not need (noise for the model)
_SCHEMA_NOISE = {"xml", "externalDocs", "discriminator", "deprecated", "readOnly", "writeOnly",
                 "$schema", "$id", "$anchor", "$comment"}


class SpecError(ValueError):
    """An invalid or unsupported spec: ``<file>: <json path>: <what is wrong>``."""

    def __init__(self, filename: str, path: str, message: str) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE - 1] + "\u2026"
        if len(path) > MAX_PATH:
            half = (MAX_PATH - 1) // 2
            path = path[:half] + "\u2026" + path[-half:]
        self.filename = filename
        self.path = path
        self.message = message
        super().__init__(f"{filename}: {path}: {message}" if path else f"{filename}: {message}")


@dataclass
class LoadedSpec:
    """A validated spec with its ``$ref``s resolved, and its operations as tools."""

    spec_id: str
    filename: str
    title: str
    version: str
    #: "2.0", "3.0.3", "3.1.0", ...
    openapi_version: str
    #: absolute base URLs of the spec's servers (spec-, path- and operation-level)
    servers: list[str]
    tools: list[ApiTool]
    #: the whole spec with every $ref resolved
    spec: dict[str, Any] = field(repr=False)
    #: things that were accepted but are worth knowing (relative servers, renamed tools)
    warnings: list[str] = field(default_factory=list)

    def hosts(self) -> list[str]:
        """``host:port`` of every server: the default allow-list for this spec."""
        return sorted({h for s in self.servers if (h := server_host(s))})

    def tool(self, name: str) -> ApiTool:
        for t in self.tools:
            if t.name == name:
                return t
        raise KeyError(f"{self.filename}: no operation is named {name!r}")


def server_host(url: str) -> str:
    """``host:port`` of an absolute URL (the default port made explicit), else ''."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return ""
    if not host or port is None:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host.lower()}:{port}"


def json_path(parts: tuple[Any, ...] | list[Any]) -> str:
    """``paths./hives/{id}.get.parameters[0]`` for ('paths', '/hives/{id}', 'get',
    'parameters', 0)."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


# --- sniffing --------------------------------------------------------------------------

_YAML_KEY = re.compile(r"""^\s*["']?(openapi|swagger)["']?\s*:\s*["']?(\d)""", re.M)
_YAML_TOP_KEY = re.compile(r"""^(["']?)(openapi|swagger)\1\s*:\s*["']?[23]\.""", re.M)
_JSON_KEY = re.compile(r""""(openapi|swagger)"\s*:\s*"[23]\.""")
_FIRST_LINE_IS_KEY = re.compile(r"""^["']?[A-Za-z_$][\w$.-]*["']?\s*:(\s|$)""")


def is_api_spec(head: bytes, filename: str = "") -> bool:
    """Whether ``head`` (the first bytes of a file) looks like an OpenAPI/Swagger document.

    Decided by content, not by the name: JSON that starts with ``{`` and has an
    ``"openapi": "3.`` or ``"swagger": "2.`` key, or YAML whose first line is a mapping key
    and that has a top-level ``openapi:``/``swagger:`` key. A Markdown or text document that
    merely mentions ``openapi: 3.0`` in its prose does not qualify."""
    text = head[:SNIFF_BYTES].decode("utf-8", errors="ignore").lstrip("\ufeff")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return bool(_JSON_KEY.search(stripped))
    first = ""
    for line in stripped.splitlines():
        s = line.strip()
        if not s or s.startswith("#") or s in {"---", "%YAML 1.2", "%YAML 1.1"}:
            continue
        first = line
        break
    if not _FIRST_LINE_IS_KEY.match(first):
        return False
    return bool(_YAML_TOP_KEY.search(text))


# --- parsing ---------------------------------------------------------------------------


def _too_deep(where: str = "") -> str:
    return f"nested deeper than {MAX_DEPTH} levels{where}"


class _TooDeep(Exception):
    """The YAML composer went past ``MAX_DEPTH``; carries where."""

    def __init__(self, mark: Any) -> None:
        super().__init__()
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """Safe YAML without the timestamp type: ``2024-05-01`` stays a string (a date in an
    example must survive as the JSON the API would see). The composer, the one recursive
    stage of PyYAML (scanner and parser are state machines, the constructor defers
    children), counts its depth and stops past ``MAX_DEPTH``, flow or block alike."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self._depth > MAX_DEPTH:
            raise _TooDeep(self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

# a JSON string; possessive, and it also takes an unterminated string to the end of the
# text, so every match attempt succeeds in one pass (no quadratic backtracking on '\\"')
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})


def _json_depth(text: str) -> int:
    """The deepest bracket nesting of JSON text, outside strings, without recursing: the
    brackets become bytes 2 (open) and 0 (close), and after k of them the depth is their
    running sum minus k. All of it runs in C, so a large spec costs milliseconds."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if not brackets:
        return 0
    steps = brackets.translate(_BRACKET_STEP).encode("latin-1")
    return max(map(sub, accumulate(steps), count(1)))


def _parse(data: bytes, filename: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(filename, "", f"not UTF-8 text (byte {exc.start})") from None
    if text.lstrip().startswith("{"):
        if _json_depth(text) > MAX_DEPTH:
            raise SpecError(filename, "", _too_deep())
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(filename, "", f"invalid JSON at line {exc.lineno}, column "
                            f"{exc.colno}: {exc.msg}") from None
        except RecursionError:  # not reached after the pre-scan; kept as a backstop
            raise SpecError(filename, "", _too_deep()) from None
    try:
        loader = _Loader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _TooDeep as exc:
        mark = exc.mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(filename, "", _too_deep(where)) from None
    except RecursionError:  # a backstop: the composer's own bound stops well before
        raise SpecError(filename, "", _too_deep()) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(filename, "", f"invalid YAML{where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(filename, "", f"invalid YAML: {exc}") from None


def _normalise(node: Any, filename: str, path: tuple[Any, ...], budget: list[int]) -> Any:
    """Plain JSON values: string keys (YAML allows ``200:``), lists, no sets or bytes.
    Counts nodes, so an alias bomb is refused rather than expanded, and bounds the depth,
    which YAML aliases (and a recursive alias, ``a: &a [*a]``) can take past the text's."""
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(filename, json_path(path), f"the spec has more than {MAX_NODES} "
                        "nodes (YAML aliases expanding?)")
    if len(path) > MAX_DEPTH:
        raise SpecError(filename, json_path(path[:MAX_DEPTH]), _too_deep())
    if isinstance(node, dict):
        return {str(k): _normalise(v, filename, (*path, str(k)), budget)
                for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_normalise(v, filename, (*path, i), budget) for i, v in enumerate(node)]
    if node is None or isinstance(node, str | int | float | bool):
        return node
    return str(node)


# --- $ref ------------------------------------------------------------------------------

#: keywords whose value is a URI reference that a resolver would follow
_REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def _quote(value: str, limit: int = 120) -> str:
    """``repr`` of a string from the spec, cut to ``limit`` characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "\u2026"


def _refuse_remote_refs(doc: Any, filename: str) -> None:
    """Refuse every ``$ref`` (``$dynamicRef``, ``$recursiveRef``) with a string value that
    does not start with ``#``, anywhere in the document.

    Unlike ``_check_refs`` this does not skip literal values: openapi-spec-validator reads
    ``default`` (and jsonschema-path resolves any mapping it walks into that has a
    ``$ref``), so ``default: {$ref: "file:///etc/passwd"}`` would be fetched and its text
    quoted in the error. So an ``example`` whose data happens to hold a ``$ref`` to a URL
    is refused too; that is the price of never fetching. Iterative, with the path kept as
    a linked list and built only for the error."""
    stack: list[tuple[Any, tuple[Any, ...] | None]] = [(doc, None)]
    while stack:
        node, link = stack.pop()
        if isinstance(node, dict):
            for key in _REF_KEYS:
                ref = node.get(key)
                if isinstance(ref, str) and not ref.startswith("#"):
                    parts: list[Any] = [key]
                    while link is not None:
                        link, part = link
                        parts.append(part)
                    what = f"{_quote(ref)} refers to another document" if ref else \
                        "an empty reference"
                    raise SpecError(filename, json_path(parts[::-1]), f"{what}; only "
                                    "references inside the spec ('#/...') are supported "
                                    "(nothing is fetched while a spec is read)")
            stack.extend((v, (link, k)) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((v, (link, i)) for i, v in reversed(list(enumerate(node))))


# literal data, where a "$ref" key is a value and not a reference
_LITERAL_KEYS = {"example", "default", "enum", "const"}


# maps whose keys are names (a property called "default" is a schema, not a value)
_NAME_MAPS = {"properties", "patternProperties", "definitions", "$defs", "schemas", "paths",
              "responses", "parameters", "examples", "headers", "content", "variables",
              "securitySchemes", "requestBodies", "callbacks", "links", "encoding",
              "pathItems", "webhooks", "securityDefinitions"}


def _literal(parent: str | None, key: str) -> bool:
    return key in _LITERAL_KEYS and parent not in _NAME_MAPS


def _walk_refs(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        parent = path[-1] if path and isinstance(path[-1], str) else None
        if "$ref" in node and parent not in _NAME_MAPS:
            yield path, node["$ref"]
        for k, v in node.items():
            if _literal(parent, k) or (k == "$ref" and parent not in _NAME_MAPS):
                continue
            yield from _walk_refs(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_refs(v, (*path, i))


def _pointer(doc: Any, ref: str) -> Any:
    """The node at a local ``#/a/b`` reference; ``KeyError`` naming the missing part."""
    node = doc
    for raw in ref[2:].split("/") if ref != "#" else []:
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(part)
    return node


def _check_refs(doc: dict[str, Any], filename: str) -> None:
    """The local references where they are references (literal values skipped): each a
    string, a JSON pointer, and one that resolves. Non-local ones never get here
    (``_refuse_remote_refs`` runs first)."""
    for path, ref in _walk_refs(doc):
        where = json_path((*path, "$ref"))
        if not isinstance(ref, str):
            raise SpecError(filename, where, f"must be a string, not {type(ref).__name__}")
        if ref != "#" and not ref.startswith("#/"):
            raise SpecError(filename, where, f"{_quote(ref)}: anchors are not supported; "
                            "use a JSON pointer ('#/components/...')")
        try:
            _pointer(doc, ref)
        except KeyError as exc:
            raise SpecError(filename, where, f"{_quote(ref)} does not resolve: there is no "
                            f"{_quote(str(exc.args[0]), 60)}") from None


class _Resolver:
    def __init__(self, doc: dict[str, Any], filename: str) -> None:
        self.doc = doc
        self.filename = filename
        self.nodes = 0

    def _target(self, ref: str, path: tuple[Any, ...]) -> Any:
        # ``_check_refs`` saw every reference at its own place in the document; a node
        # reached through a $ref is walked under the referring path, so a reference the
        # walk took for a name (or for data) can turn up here: refuse it the same way
        if ref.startswith("#/") or ref == "#":
            try:
                return _pointer(self.doc, ref)
            except KeyError as exc:
                raise SpecError(self.filename, json_path((*path, "$ref")),
                                f"{_quote(ref)} does not resolve: there is no "
                                f"{_quote(str(exc.args[0]), 60)}") from None
        raise SpecError(self.filename, json_path((*path, "$ref")), f"{_quote(ref)} is not "
                        "a JSON pointer into the spec ('#/components/...')")

    def resolve(self, node: Any, stack: tuple[str, ...] = (), path: tuple[Any, ...] = (),
                depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpecError(self.filename, json_path(path), f"resolving $refs expands the "
                            f"spec past {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise SpecError(self.filename, json_path(path),
                            _too_deep(" once its $refs are resolved"))
        if isinstance(node, dict):
            parent = path[-1] if path and isinstance(path[-1], str) else None
            ref = node.get("$ref") if parent not in _NAME_MAPS else None
            if isinstance(ref, str):
                if ref in stack:
                    name = ref.rsplit("/", 1)[-1]
                    target = self._target(ref, path)
                    stub: dict[str, Any] = {"description": f"(recursive: another {name}, "
                                            "as described above)"}
                    if isinstance(target, dict) and isinstance(target.get("type"), str):
                        stub["type"] = target["type"]
                    return stub
                # the target takes the place of the reference: the same depth
                target = self.resolve(self._target(ref, path), (*stack, ref), path, depth)
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                if siblings and isinstance(target, dict):
                    # OpenAPI 3.1 / JSON Schema 2020-12: keywords beside $ref apply too
                    merged = dict(target)
                    merged.update(self.resolve(siblings, stack, path, depth))
                    return merged
                return target
            return {k: (v if _literal(parent, k) else
                        self.resolve(v, stack, (*path, k), depth + 1))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v, stack, (*path, i), depth + 1) for i, v in enumerate(node)]
        return node


# --- validation ------------------------------------------------------------------------


class _FetchRefused(Exception):
    """Raised by the validator's resolver in place of fetching ``uri``."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"refused to fetch {_quote(str(uri))}")
        self.uri = str(uri)


def _refuse_fetch(uri: str) -> Any:
    raise _FetchRefused(uri)


class _NoFetchHandlers(Mapping[str, Callable[[str], Any]]):
    """Resolver handlers for jsonschema-path that claim every URI scheme and refuse.

    jsonschema-path's ``SchemaRetriever`` calls the handler for a scheme it finds in its
    handlers mapping and otherwise falls back to ``urlopen`` (or ``requests``) for *any*
    URI, so leaving a scheme out is not enough: this mapping contains every scheme, the
    empty one (a relative reference) included. Nothing is listed, since there is nothing
    to iterate."""

    def __contains__(self, scheme: object) -> bool:
        return True

    def __getitem__(self, scheme: str) -> Callable[[str], Any]:
        return _refuse_fetch

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_FETCH = _NoFetchHandlers()


@functools.cache
def _validator_class(version: str) -> type:
    """openapi-spec-validator's validator for ``version``, offline, and with the Python
    ``jsonschema`` backend for the meta-schema, whatever is installed (its messages and
    its ``context`` of sub-errors, which ``best_match`` needs, are what this module
    reports)."""
    from openapi_spec_validator import (
        OpenAPIV2SpecValidator,
        OpenAPIV30SpecValidator,
        OpenAPIV31SpecValidator,
    )
    from openapi_spec_validator.schemas import schema_v2, schema_v30, schema_v31
    from openapi_spec_validator.schemas.backend.jsonschema import create_validator

    base, meta = {"2": (OpenAPIV2SpecValidator, schema_v2),
                  "3.0": (OpenAPIV30SpecValidator, schema_v30),
                  "3.1": (OpenAPIV31SpecValidator, schema_v31)}[version]
    return type(f"Offline{base.__name__}", (base,), {
        "resolver_handlers": _NO_FETCH,
        "schema_validator": create_validator(dict(meta)),
    })


def _refused_fetch(exc: BaseException | None) -> _FetchRefused | None:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, _FetchRefused):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


_KINDS = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
          dict: "an object", list: "an array", type(None): "null"}


def _message(err: Any) -> str:
    """A validation error's message without the value it is about.

    jsonschema's messages quote the instance (``'text' is not of type 'object'``,
    ``False schema does not allow 'text'``); had anything been fetched, that would be the
    fetched text. Every standalone occurrence of ``repr(instance)`` becomes "the value at
    this path (<its kind>)". Names quoted from the schema (``'in' is a required
    property``) stay."""
    lines = [line for line in str(getattr(err, "message", None) or "").splitlines()
             if line.strip()]
    message = lines[0] if lines else type(err).__name__
    instance = getattr(err, "instance", _KINDS)  # _KINDS: a sentinel, "no instance"
    if instance is _KINDS:
        return message
    quoted = repr(instance)
    phrase = f"the value at this path ({_KINDS.get(type(instance), 'a value')})"
    out: list[str] = []
    i = 0
    while (j := message.find(quoted, i)) >= 0:
        end = j + len(quoted)
        before = message[j - 1] if j else " "
        after = message[end] if end < len(message) else " "
        if not (before.isalnum() or before in "_'\"") and \
                not (after.isalnum() or after in "_'\""):
            out += [message[i:j], phrase]
            i = end
        else:
            out.append(message[i:j + 1])
            i = j + 1
    out.append(message[i:])
    return "".join(out)


def _validate(doc: dict[str, Any], filename: str, version: str) -> None:
    cls = _validator_class(version)
    try:
        # the first error only: the validator can trip over its own follow-up checks on a
        # node it has already found invalid
        err = next(iter(cls(doc).iter_errors()), None)
    except SpecError:
        raise
    except RecursionError:
        raise SpecError(filename, "", "nests too deeply to validate (count the levels its "
                        f"$refs lead through too; at most {MAX_DEPTH})") from None
    except Exception as exc:  # the validator failed on a malformed node
        refused = _refused_fetch(exc)
        if refused is not None:
            raise SpecError(filename, "", f"{_quote(refused.uri)} is outside the spec; "
                            "nothing is fetched while a spec is read") from None
        from referencing.exceptions import NoSuchAnchor, PointerToNowhere, Unresolvable

        if isinstance(exc, Unresolvable):  # a local $ref the validator followed (a default)
            ref = str(exc.ref)
            if isinstance(exc, PointerToNowhere):
                ref = "#" + ref  # it carries the pointer only
            elif isinstance(exc, NoSuchAnchor):
                ref = f"{ref}#{exc.anchor}"
            raise SpecError(filename, "", f"{_quote(ref)} does not resolve "
                            f"({type(exc).__name__})") from None
        # not str(exc): an error may print the whole node it failed on
        raise SpecError(filename, "", f"invalid spec ({type(exc).__name__})") from None
    finally:
        # ``SpecValidator.iter_errors`` sits under an unbounded ``lru_cache`` keyed by the
        # validator, which would keep every spec ever validated alive; nothing here reuses
        # a validator, and a caller already holds its iterator, so the cache is dropped
        cached = getattr(cls.iter_errors, "__wrapped__", None)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
    if err is None:
        return
    refused = _refused_fetch(getattr(err, "cause", None))
    if refused is not None:
        raise SpecError(filename, json_path(list(getattr(err, "absolute_path", None) or [])),
                        f"{_quote(refused.uri)} is outside the spec; nothing is fetched "
                        "while a spec is read")
    context = getattr(err, "context", None)
    if context:
        # "not valid under any of the given schemas" (oneOf: a parameter or a $ref): the
        # sub-error that went deepest says what is actually wrong
        from jsonschema.exceptions import best_match

        err = best_match(context) or err
    parts = list(getattr(err, "absolute_path", None) or [])
    raise SpecError(filename, json_path(parts), _message(err))


def _version(doc: Any, filename: str) -> tuple[str, str]:
    if not isinstance(doc, dict):
        raise SpecError(filename, "", f"the top level is {type(doc).__name__}, not a mapping; "
                        "this is not an OpenAPI spec")
    if "openapi" in doc:
        v = str(doc["openapi"])
        if v.startswith("3.0"):
            return "3.0", v
        if v.startswith("3.1"):
            return "3.1", v
        raise SpecError(filename, "openapi", f"unsupported version {v!r}; supported: "
                        "3.0.x, 3.1.x and Swagger 2.0")
    if "swagger" in doc:
        v = str(doc["swagger"])
        if v == "2.0":
            return "2", v
        raise SpecError(filename, "swagger", f"unsupported version {v!r}; supported: "
                        "3.0.x, 3.1.x and Swagger 2.0")
    raise SpecError(filename, "", "neither 'openapi' nor 'swagger' is set: this is not an "
                    "OpenAPI spec")


# --- servers ---------------------------------------------------------------------------


def _server_urls(servers: Any, base_url: str | None, warnings: list[str], where: str
                 ) -> list[str]:
    out = []
    for s in servers or []:
        if not isinstance(s, dict) or not isinstance(s.get("url"), str):
            continue
        url = s["url"]
        for name, var in (s.get("variables") or {}).items():
            if isinstance(var, dict) and "default" in var:
                url = url.replace("{" + name + "}", str(var["default"]))
        out.append(_absolute(url, base_url, warnings, where))
    return [u for u in out if u]


def _absolute(url: str, base_url: str | None, warnings: list[str], where: str) -> str:
    if urlsplit(url).scheme in {"http", "https"}:
        return url.rstrip("/")
    if base_url:
        return urljoin(base_url.rstrip("/") + "/", url.lstrip("/")).rstrip("/")
    warnings.append(f"{where}: server {url!r} is relative and no base URL is set "
                    "(api_annotator.base_url); its operations cannot be called")
    return url.rstrip("/")


def _swagger_server(doc: dict[str, Any], base_url: str | None, warnings: list[str]) -> list[str]:
    base_path = str(doc.get("basePath") or "")
    host = doc.get("host")
    if not host:
        return [_absolute(base_path or "/", base_url, warnings, "host")]
    schemes = [s for s in doc.get("schemes") or [] if s in {"https", "http"}]
    scheme = "https" if "https" in schemes or not schemes else schemes[0]
    return [f"{scheme}://{host}{base_path}".rstrip("/")]


# --- tools -----------------------------------------------------------------------------


def _sanitise(name: str) -> str:
    out = re.sub(r"[^a-zA-Z0-9_-]+", "_", name).strip("_")
    return out[:64] or "operation"


def _clean_schema(schema: Any, *, request: bool = True) -> Any:
    """A JSON schema the model can read: OpenAPI-only keywords dropped, ``nullable``
    turned into a JSON-schema type list, Swagger's ``file`` into a binary string; in a
    request, ``readOnly`` properties (the server sets them) are left out."""
    if isinstance(schema, list):
        return [_clean_schema(s, request=request) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for k, v in schema.items():
        if k in _SCHEMA_NOISE or k.startswith("x-") or k == "nullable":
            continue
        if k in _LITERAL_KEYS or k == "examples" and isinstance(v, list):
            out[k] = v
        elif k == "properties" and isinstance(v, dict):
            out[k] = {p: _clean_schema(s, request=request) for p, s in v.items()
                      if not (request and isinstance(s, dict) and s.get("readOnly"))}
        else:
            out[k] = _clean_schema(v, request=request)
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("type") == "file":
        out["type"] = "string"
        out["format"] = "binary"
    if isinstance(out.get("required"), list) and isinstance(out.get("properties"), dict):
        out["required"] = [r for r in out["required"] if r in out["properties"]]
        if not out["required"]:
            del out["required"]
    return out


_FORMAT_SAMPLES = {
    "date": "2024-05-01", "date-time": "2024-05-01T12:00:00Z", "time": "12:00:00",
    "email": "user@example.com", "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "uri": "https://example.com", "url": "https://example.com", "hostname": "example.com",
    "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "byte": "aGVsbG8=", "password": "secret",
}


def _sample(schema: Any, name: str = "", depth: int = 0) -> Any:
    """An argument value from a schema: its example, default, first enum value, else one
    made from its type and format (for the basic functionality test)."""
    if not isinstance(schema, dict) or depth > 6:
        return "example"
    for key in ("example", "default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("allOf", "oneOf", "anyOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            if key == "allOf":
                merged: dict[str, Any] = {}
                for part in schema[key]:
                    if isinstance(part, dict):
                        for k, v in part.items():
                            if k == "properties" and isinstance(v, dict):
                                merged.setdefault("properties", {}).update(v)
                            elif k == "required" and isinstance(v, list):
                                merged.setdefault("required", []).extend(v)
                            else:
                                merged.setdefault(k, v)
                merged.setdefault("type", "object")
                return _sample(merged, name, depth + 1)
            options = [s for s in schema[key] if isinstance(s, dict) and s.get("type") != "null"]
            return _sample(options[0] if options else schema[key][0], name, depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), None)
    if typ is None and "properties" in schema:
        typ = "object"
    if typ == "integer":
        lo = schema.get("minimum")
        return int(lo) if isinstance(lo, int | float) and lo > 1 else 1
    if typ == "number":
        lo = schema.get("minimum")
        return float(lo) if isinstance(lo, int | float) and lo > 1 else 1.0
    if typ == "boolean":
        return True
    if typ == "array":
        return [_sample(schema.get("items") or {}, name, depth + 1)]
    if typ == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        out = {}
        for p, s in props.items():
            if p in required or (isinstance(s, dict) and any(
                    k in s for k in ("example", "examples", "default"))):
                out[p] = _sample(s, p, depth + 1)
        return out
    fmt = schema.get("format")
    if fmt in _FORMAT_SAMPLES:
        return _FORMAT_SAMPLES[fmt]
    return "1" if name.lower().endswith("id") else "example"


def _param_example(param: dict[str, Any], schema: dict[str, Any]) -> tuple[bool, Any]:
    """(has an explicit example/default, the value)."""
    if "example" in param:
        return True, param["example"]
    examples = param.get("examples")
    if isinstance(examples, dict):
        for ex in examples.values():
            if isinstance(ex, dict) and "value" in ex:
                return True, ex["value"]
    explicit = any(k in schema for k in ("example", "examples", "default"))
    return explicit, _sample(schema, str(param.get("name", "")))


def _media_example(content: dict[str, Any], schema: Any) -> Any:
    if "example" in content:
        return content["example"]
    examples = content.get("examples")
    if isinstance(examples, dict):
        for ex in examples.values():
            if isinstance(ex, dict) and "value" in ex:
                return ex["value"]
    return _sample(schema)


def _pick_media(content: dict[str, Any]) -> str | None:
    if not isinstance(content, dict) or not content:
        return None
    types = list(content)
    for t in types:
        if t.split(";")[0].strip().lower() == "application/json":
            return t
    for t in types:
        if "json" in t.lower():
            return t
    return types[0]


def _success_response(op: dict[str, Any]) -> dict[str, Any] | None:
    responses = op.get("responses") or {}
    for code in sorted(responses, key=str):
        if str(code).startswith("2") and isinstance(responses[code], dict):
            return responses[code]
    default = responses.get("default")
    return default if isinstance(default, dict) else None


class _Converter:
    def __init__(self, spec: dict[str, Any], *, filename: str, spec_id: str, version: str,
                 base_url: str | None, warnings: list[str]) -> None:
        self.spec = spec
        self.filename = filename
        self.spec_id = spec_id
        self.v2 = version == "2"
        self.base_url = base_url
        self.warnings = warnings
        self.title = str((spec.get("info") or {}).get("title") or filename)
        if self.v2:
            self.servers = _swagger_server(spec, base_url, warnings)
        else:
            self.servers = _server_urls(spec.get("servers"), base_url, warnings, "servers")
            if not self.servers:
                # OpenAPI 3: no servers means "/", relative to where the spec was served
                self.servers = [_absolute("/", base_url, warnings, "servers")]
        self.all_servers = list(self.servers)
        self.names: set[str] = set()

    def tools(self) -> list[ApiTool]:
        out = []
        for path, item in (self.spec.get("paths") or {}).items():
            if not isinstance(item, dict):
                continue
            path_servers = None if self.v2 else _server_urls(
                item.get("servers"), self.base_url, self.warnings,
                json_path(("paths", path, "servers")))
            for method in HTTP_METHODS:
                op = item.get(method)
                if isinstance(op, dict):
                    out.append(self.tool(path, method, item, op, path_servers))
        return out

    def _name(self, op: dict[str, Any], method: str, path: str) -> str:
        raw = op.get("operationId")
        base = _sanitise(str(raw)) if raw else \
            re.sub(r"_+", "_", _sanitise(f"{method}_{path}"))
        if raw and base != raw:
            self.warnings.append(f"operationId {raw!r} is not a valid function name; "
                                 f"the tool is called {base!r}")
        name, n = base, 2
        while name in self.names:
            suffix = f"_{n}"
            name = base[:64 - len(suffix)] + suffix
            n += 1
        self.names.add(name)
        return name

    def tool(self, path: str, method: str, item: dict[str, Any], op: dict[str, Any],
             path_servers: list[str] | None) -> ApiTool:
        where = ("paths", path, method)
        name = self._name(op, method, path)
        summary = str(op.get("summary") or "").strip()
        desc = str(op.get("description") or "").strip()
        if summary and desc and not desc.startswith(summary):
            description = f"{summary}\n\n{desc}"
        else:
            description = desc or summary or f"{method.upper()} {path}"

        params: dict[tuple[str, str], dict[str, Any]] = {}
        for p in list(item.get("parameters") or []) + list(op.get("parameters") or []):
            if isinstance(p, dict) and "name" in p and "in" in p:
                params[(str(p["name"]), str(p["in"]))] = p

        properties: dict[str, Any] = {}
        required: list[str] = []
        locations: dict[str, str] = {}
        aliases: dict[str, str] = {}
        examples: dict[str, Any] = {}
        request_media: str | None = None
        body_params: list[dict[str, Any]] = []

        for (pname, loc), p in params.items():
            if loc in {"body", "formData"}:  # Swagger 2 request bodies
                body_params.append(p)
                continue
            if loc not in {"path", "query", "header", "cookie"}:
                continue
            schema = self._param_schema(p)
            arg = pname
            if arg in properties or arg == "body" or not NAME_ARG.match(arg):
                arg = _arg_name(f"{loc}_{pname}", properties)
                aliases[arg] = pname
            if p.get("description"):
                schema = {**schema, "description": str(p["description"]).strip()}
            properties[arg] = schema
            locations[arg] = loc
            is_required = bool(p.get("required")) or loc == "path"
            if is_required:
                required.append(arg)
            explicit, value = _param_example(p, schema)
            if is_required or explicit:
                examples[arg] = value

        body_schema, body_required, body_example, request_media = self._body(op, body_params)
        if body_schema is not None:
            properties["body"] = body_schema
            locations["body"] = "body"
            if body_required:
                required.append("body")
            if body_required or body_example is not None:
                examples["body"] = body_example if body_example is not None else \
                    _sample(body_schema)

        parameters: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = required

        servers = self.servers
        if not self.v2:
            op_servers = _server_urls(op.get("servers"), self.base_url, self.warnings,
                                      json_path((*where, "servers")))
            servers = op_servers or path_servers or self.servers
            for s in servers:
                if s not in self.all_servers:
                    self.all_servers.append(s)

        tags = op.get("tags") or []
        category = str(tags[0]) if tags else self.title
        return ApiTool(
            name=name, description=description, parameters=parameters,
            locations=locations, aliases=aliases, category=category, method=method.upper(),
            path=path, server=servers[0] if servers else "",
            request_media_type=request_media,
            response_media_type=self._response_media(op),
            response_schema=self._response_schema(op),
            example_arguments=examples, spec_id=self.spec_id)

    def _param_schema(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.v2:
            schema = {k: v for k, v in p.items() if k in {
                "type", "format", "items", "enum", "default", "minimum", "maximum",
                "minLength", "maxLength", "pattern", "exclusiveMinimum", "exclusiveMaximum",
                "minItems", "maxItems", "uniqueItems", "multipleOf", "example"}}
            if "x-example" in p:
                schema["example"] = p["x-example"]
        elif isinstance(p.get("schema"), dict):
            schema = dict(p["schema"])
        elif isinstance(p.get("content"), dict) and p["content"]:
            media = _pick_media(p["content"])
            schema = dict((p["content"][media] or {}).get("schema") or {}) if media else {}
        else:
            schema = {}
        return _clean_schema(schema) or {"type": "string"}

    def _body(self, op: dict[str, Any], body_params: list[dict[str, Any]]
              ) -> tuple[dict[str, Any] | None, bool, Any, str | None]:
        if self.v2:
            consumes = op.get("consumes") or self.spec.get("consumes") or []
            for p in body_params:
                if p.get("in") == "body":
                    schema = _clean_schema(dict(p.get("schema") or {}))
                    if p.get("description"):
                        schema.setdefault("description", str(p["description"]).strip())
                    media = next((c for c in consumes if "json" in c), None) or \
                        (consumes[0] if consumes else "application/json")
                    example = p.get("x-example")
                    if example is None and (p.get("required") or _has_examples(schema)):
                        example = _sample(schema)
                    return schema, bool(p.get("required")), example, media
            form = [p for p in body_params if p.get("in") == "formData"]
            if not form:
                return None, False, None, None
            props = {str(p["name"]): self._param_schema(p) for p in form}
            req = [str(p["name"]) for p in form if p.get("required")]
            schema = {"type": "object", "properties": props, **({"required": req} if req else {})}
            media = next((c for c in consumes if "form" in c), "application/x-www-form-urlencoded")
            return schema, bool(req), _sample(schema) if req else None, media
        body = op.get("requestBody")
        if not isinstance(body, dict):
            return None, False, None, None
        content = body.get("content") or {}
        media = _pick_media(content)
        if media is None:
            return None, False, None, None
        mt = content[media] or {}
        raw_schema = mt.get("schema") or {}
        schema = _clean_schema(dict(raw_schema)) or {}
        if body.get("description"):
            schema.setdefault("description", str(body["description"]).strip())
        required = bool(body.get("required"))
        example = None
        if required or "example" in mt or "examples" in mt or _has_examples(schema):
            example = _media_example(mt, schema)
        return schema, required, example, media

    def _response_schema(self, op: dict[str, Any]) -> dict[str, Any] | None:
        ok = _success_response(op)
        if not ok:
            return None
        if self.v2:
            schema = ok.get("schema")
        else:
            content = ok.get("content") or {}
            media = _pick_media(content)
            schema = (content[media] or {}).get("schema") if media else None
        if not isinstance(schema, dict) or not schema:
            return None
        return _clean_schema(dict(schema), request=False)

    def _response_media(self, op: dict[str, Any]) -> str | None:
        if self.v2:
            produces = op.get("produces") or self.spec.get("produces") or []
            if produces:
                return next((p for p in produces if "json" in p), produces[0])
            ok = _success_response(op)
            return "application/json" if ok and ok.get("schema") else None
        ok = _success_response(op)
        if not ok:
            return None
        media = _pick_media(ok.get("content") or {})
        return media.split(";")[0].strip() if media else None


NAME_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def _arg_name(candidate: str, taken: dict[str, Any]) -> str:
    base = _sanitise(candidate)
    name, n = base, 2
    while name in taken or name == "body":
        name = f"{base}_{n}"
        n += 1
    return name


def _has_examples(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if any(k in schema for k in ("example", "examples", "default")):
        return True
    return any(_has_examples(s) for s in (schema.get("properties") or {}).values())


# --- the entry point -------------------------------------------------------------------


def load_spec(data: bytes, *, filename: str, spec_id: str = "",
              base_url: str | None = None) -> LoadedSpec:
    """Parse, validate and resolve a spec; one ``ApiTool`` per operation.

    ``spec_id`` defaults to the sha256 of ``data``. ``base_url`` is where relative server
    URLs (``/v1``, or none at all) are resolved; without it they stay relative, a warning
    says so, and the caller refuses to call them. Raises ``SpecError``."""
    spec_id = spec_id or sha256_hex(data)
    raw = _parse(data, filename)
    doc = _normalise(raw, filename, (), [MAX_NODES])
    _refuse_remote_refs(doc, filename)
    version, full_version = _version(doc, filename)
    _check_refs(doc, filename)
    _validate(doc, filename, version)
    try:
        resolved = _Resolver(doc, filename).resolve(doc)
    except RecursionError:  # a backstop: the resolver's depth bound stops well before
        raise SpecError(filename, "", _too_deep(" once its $refs are resolved")) from None
    if not (resolved.get("paths") or {}):
        raise SpecError(filename, "paths", "the spec has no operations")
    warnings: list[str] = []
    conv = _Converter(resolved, filename=filename, spec_id=spec_id, version=version,
                      base_url=base_url, warnings=warnings)
    tools = conv.tools()
    if not tools:
        raise SpecError(filename, "paths", "the spec has no operations")
    info = resolved.get("info") or {}
    return LoadedSpec(spec_id=spec_id, filename=filename, title=conv.title,
                      version=str(info.get("version") or ""), openapi_version=full_version,
                      servers=conv.all_servers, tools=tools, spec=resolved,
                      warnings=warnings)
