"""The AsyncAPI document: generated from the services' FastStream routers, committed under
docs/, valid AsyncAPI 3.0, and complete (every consumer, every contract subject)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from syllabus.contracts import SUBJECT_MODELS, dlq_subject
from syllabus.services.cli import main
from syllabus.services.cli._asyncapi import build_asyncapi, consumers, render_asyncapi
from syllabus.services.cli._services import SERVICES

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
SCHEMA = ROOT / "deploy" / "schemas" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def doc() -> dict:
    return build_asyncapi()


def test_committed_document_is_up_to_date() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render_asyncapi(), (
        "docs/asyncapi.yaml is out of date: run `syllabus asyncapi --out docs/asyncapi.yaml`")


def test_document_is_valid_asyncapi_3(doc: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{e.json_path}: {e.message[:200]}" for e in validator.iter_errors(doc)]
    assert not errors, "\n".join(errors)
    broken = json.loads(json.dumps(doc))
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording
    assert list(validator.iter_errors(broken)), "the schema must reject a bad action"


def _resolve(doc: dict, ref: str) -> dict:
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_consumer_is_a_receive_operation_with_its_contract(doc: dict) -> None:
    found = consumers()
    assert {c.service for c in found} == set(SERVICES)
    receives = {op["channel"]["$ref"]: op for op in doc["operations"].values()
                if op["action"] == "receive"}
    for c in found:
        ref = f"#/channels/{c.service}:{c.subject}"
        assert ref in receives, f"{c.service} consumes {c.subject} but the document omits it"
        channel = _resolve(doc, ref)
        assert channel["address"] == c.subject
        [message_ref] = channel["messages"].values()
        message = _resolve(doc, message_ref["$ref"])
        model = SUBJECT_MODELS[c.subject]
        assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        payload = _resolve(doc, message["payload"]["$ref"])
        assert set(model.model_fields) <= set(payload["properties"])


def test_every_subject_has_a_send_operation(doc: dict) -> None:
    sent = {_resolve(doc, op["channel"]["$ref"])["address"]
            for op in doc["operations"].values() if op["action"] == "send"}
    expected = set(SUBJECT_MODELS) | {dlq_subject(s) for s in SERVICES}
    assert expected <= sent, f"missing: {sorted(expected - sent)}"


def test_every_reference_resolves(doc: dict) -> None:
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                _resolve(doc, node["$ref"])  # raises KeyError when dangling
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    headers = doc["components"]["schemas"]["SyllabusHeaders"]
    assert "Nats-Msg-Id" in headers["required"]


def test_cli_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    result = CliRunner().invoke(main, ["asyncapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")
    result = CliRunner().invoke(main, ["asyncapi", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == yaml.safe_load(COMMITTED.read_text())
