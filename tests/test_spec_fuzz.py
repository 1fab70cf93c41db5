"""Property tests of the spec loader: whatever bytes come in, ``load_spec`` returns a
``LoadedSpec`` or raises ``SpecError``, never another exception (which the services would
turn into a 500 or a retry), and ``is_api_spec`` never raises.

The inputs: random bytes; the bundled valid specs (the Hive example, and the specs of
tests/test_api_specs.py) with bytes flipped, inserted, deleted or repeated, and with
YAML/JSON syntax spliced in; and the parsed specs with one node replaced by a random JSON
value, which gets past the parser and probes the validator and the tool converter.
Derandomized, so CI sees the same examples every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syllabus.services.runtime._openapi import LoadedSpec, SpecError, is_api_spec, load_spec

from .test_api_specs import SWAGGER, _oas30

ROOT = Path(__file__).resolve().parent.parent
HIVE = (ROOT / "examples" / "hive-api" / "openapi.yaml").read_bytes()

SEEDS: list[bytes] = [
    HIVE,
    SWAGGER.encode(),
    yaml.safe_dump(_oas30(), sort_keys=False).encode(),
    json.dumps(_oas30(), indent=1).encode(),
    json.dumps(yaml.safe_load(HIVE)).encode(),
]
DOCS: list[Any] = [yaml.safe_load(HIVE), yaml.safe_load(SWAGGER), _oas30()]

#: fragments that make a parser, the validator or the resolver take another branch
TOKENS = [b"[", b"]", b"{", b"}", b"\n", b"- ", b": ", b"? ", b"&a ", b"*a", b"!!binary ",
          b"!!set ", b"!!python/object ", b'"', b"'", b"\\", b"#", b"|\n", b"\t", b"\x00",
          b"\xff", b"$ref: '#/components/schemas/Hive'\n", b'{"$ref": "#/x"}',
          b"$ref: http://127.0.0.1:1/x\n", b"default: {$ref: '#/info'}\n", b"200: ",
          b"null", b"1e999", b"-0", b"~", b"<<: *a\n", b"---\n", b"...\n", b"%YAML 1.1\n",
          b"openapi: 3.1.0\n", b"swagger: '2.0'\n", b"\xef\xbb\xbf"]
#: deep nesting, which once took the parsers past the recursion limit; spliced in where a
#: value starts (after ": "), so that it is parsed as nesting and not as text
DEEP = [b"[" * 3000, b'{"a": ' * 3000, b"{a: " * 3000, b"[" * 3000 + b"]" * 3000]

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _loads_or_refuses(data: bytes, filename: str = "fuzz.yaml") -> None:
    try:
        spec = load_spec(data, filename=filename)
    except SpecError as exc:
        assert str(exc).startswith(f"{filename}: ")
        return
    assert isinstance(spec, LoadedSpec) and spec.tools


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "token", "delete", "repeat", "deep"]))
        if op == "deep":
            starts = [i + 2 for i in range(len(data) - 1) if data[i:i + 2] == b": "]
            at = draw(st.sampled_from(starts)) if starts else at
            data[at:at] = draw(st.sampled_from(DEEP))
        elif op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "token":
            data[at:at] = draw(st.sampled_from(TOKENS)) * draw(st.integers(1, 3))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            chunk = data[at:at + draw(st.integers(1, 64))]
            data[at:at] = chunk * draw(st.integers(1, 4))
    return bytes(data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats()
    | st.text(max_size=12) | st.sampled_from(["#/info", "#/components/schemas", "#", "#x",
                                              "object", "array", "string", "path", "query"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["$ref", "type", "items", "properties", "required", "name", "in",
                         "schema", "content", "default", "example", "examples", "enum",
                         "allOf", "oneOf", "anyOf", "parameters", "responses", "200",
                         "description", "get", "/x", "x-y", "nullable", "format"])
        | st.text(max_size=6), kids, max_size=4),
    max_leaves=12)


def _nodes(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _nodes(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _nodes(v, (*path, i))
    return out


NODES = [_nodes(d) for d in DOCS]


@st.composite
def _grafted(draw: st.DrawFn) -> bytes:
    """A valid spec with one node (anywhere, the root excepted) replaced by random JSON."""
    which = draw(st.integers(0, len(DOCS) - 1))
    doc = json.loads(json.dumps(DOCS[which]))
    path = draw(st.sampled_from(NODES[which][1:]))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = draw(_JSON)
    return json.dumps(doc, allow_nan=True).encode()


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    _loads_or_refuses(data)


@FUZZ
@given(st.binary(max_size=512).map(lambda b: b"openapi: 3.1.0\n" + b))
def test_random_bytes_after_a_spec_header(data):
    _loads_or_refuses(data)


@FUZZ
@given(_mutated())
def test_mutated_specs(data):
    _loads_or_refuses(data)


# fewer: most of these get through the parser and the validator (about 0.1 s each)
@settings(FUZZ, max_examples=100)
@given(_grafted())
def test_specs_with_a_random_node(data):
    _loads_or_refuses(data, "grafted.json")


@FUZZ
@given(st.binary(max_size=1024), st.text(max_size=20))
def test_is_api_spec_never_raises(head, filename):
    assert is_api_spec(head, filename) in (True, False)


@FUZZ
@given(_mutated())
def test_is_api_spec_never_raises_on_near_specs(head):
    assert is_api_spec(head, "x.yaml") in (True, False)


def test_the_seeds_are_valid():
    """The mutations start from specs that load (else the properties prove little)."""
    for seed in SEEDS:
        assert load_spec(seed, filename="seed.yaml").tools
