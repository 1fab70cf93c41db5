"""Submitting OpenAPI specs on a real nats-server: ``submit_path`` (what ``syllabus run``
uses), the upload endpoint and ``syllabus ingest`` recognise a spec by its content, store
it under ``specs/<spec_id>`` and publish ``ApiSpecSubmitted``; an invalid one is rejected
like a document, with the JSON path of the problem."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from syllabus.contracts import (
    API_SPECS_SUBMITTED,
    DOCUMENTS_REJECTED,
    DOCUMENTS_SUBMITTED,
    ApiSpecSubmitted,
    DocumentRejected,
    RejectionReason,
    sha256_hex,
    spec_key,
)
from syllabus.services.api_annotator._example_api import EXAMPLE_SPEC
from syllabus.services.cli import main
from syllabus.services.ingest import http_routes, submit_path
from syllabus.services.runtime import Runtime, replay

pytestmark = pytest.mark.timeout(120)

BAD_SPEC = b"""openapi: 3.0.3
info: {title: Broken, version: '1'}
paths:
  /hives/{id}:
    get:
      parameters:
        - {name: id, schema: {type: string}}
      responses:
        '200': {description: ok}
"""


async def _runtime(settings) -> Runtime:
    rt = Runtime.create(settings, client_name="spec-ingest-test")
    await rt.bus.start()
    return rt


async def _events(rt: Runtime, subject: str, model):
    return [model.model_validate_json(m.data) for m in await replay(rt.bus, subject)]


async def test_submit_path_publishes_a_spec(settings, tmp_path):
    settings.api_annotator.allowed_hosts = ["127.0.0.1:8765"]
    # named .txt: recognised by its content
    path = tmp_path / "hive-api.txt"
    path.write_bytes(EXAMPLE_SPEC.read_bytes())
    rt = await _runtime(settings)
    try:
        res = await submit_path(rt, path, collection="hives", run_id="r1")
        assert (res.kind, res.outcome) == ("spec", "submitted")
        assert res.detail == "Hive API: 9 operations"
        spec_id = sha256_hex(path.read_bytes())
        assert res.doc_id == spec_id
        assert rt.store.get(spec_key(spec_id)) == path.read_bytes()
        [event] = await _events(rt, API_SPECS_SUBMITTED, ApiSpecSubmitted)
        assert (event.spec_id, event.collection, event.filename, event.store_key,
                event.allowed_hosts, event.run_id) == (
            spec_id, "hives", "hive-api.txt", f"specs/{spec_id}", ["127.0.0.1:8765"], "r1")
        assert await replay(rt.bus, DOCUMENTS_SUBMITTED) == []
        again = await submit_path(rt, path, collection="hives", run_id="r1")
        assert again.outcome == "duplicate"
        assert len(await replay(rt.bus, API_SPECS_SUBMITTED)) == 1
    finally:
        await rt.close()


async def test_invalid_spec_is_rejected_with_its_path(settings, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_bytes(BAD_SPEC)
    rt = await _runtime(settings)
    try:
        res = await submit_path(rt, path, collection="default", run_id="r2")
        assert (res.kind, res.outcome, res.reason) == ("spec", "rejected", "invalid_spec")
        assert res.detail == ("broken.yaml: paths./hives/{id}.get.parameters[0]: "
                              "'in' is a required property")
        [rej] = await _events(rt, DOCUMENTS_REJECTED, DocumentRejected)
        assert (rej.reason, rej.detail, rej.filename, rej.run_id) == (
            RejectionReason.INVALID_SPEC, res.detail, "broken.yaml", "r2")
        assert await replay(rt.bus, API_SPECS_SUBMITTED) == []
        assert not rt.store.exists(spec_key(sha256_hex(BAD_SPEC)))
    finally:
        await rt.close()


async def test_documents_still_go_to_ingest(settings, tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# API notes\n\nOur service is described with openapi: 3.0.0 in YAML.\n")
    rt = await _runtime(settings)
    try:
        res = await submit_path(rt, path, collection="default")
        assert (res.kind, res.outcome) == ("document", "submitted")
        assert len(await replay(rt.bus, DOCUMENTS_SUBMITTED)) == 1
        assert await replay(rt.bus, API_SPECS_SUBMITTED) == []
    finally:
        await rt.close()


async def test_upload_endpoint_takes_specs(settings):
    rt = await _runtime(settings)
    try:
        app = Starlette(routes=http_routes(rt))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            files = [("file", ("openapi.yaml", EXAMPLE_SPEC.read_bytes())),
                     ("file", ("broken.yaml", BAD_SPEC))]
            r = await client.post("/v1/documents", files=files, data={"collection": "api"})
            assert r.status_code == 202
            good, bad = r.json()["documents"]
            assert (good["kind"], good["outcome"]) == ("spec", "submitted")
            assert (bad["kind"], bad["outcome"], bad["reason"]) == (
                "spec", "rejected", "invalid_spec")
            assert "parameters[0]: 'in' is a required property" in bad["detail"]
            # a name that tries to leave its folder is refused before anything is read
            r = await client.post("/v1/documents", files=[
                ("file", ("../../etc/openapi.yaml", EXAMPLE_SPEC.read_bytes()))])
            assert r.status_code == 400
            [refused] = r.json()["documents"]
            assert refused["reason"] == "unsafe_name"
        events = await _events(rt, API_SPECS_SUBMITTED, ApiSpecSubmitted)
        assert [(e.filename, e.collection) for e in events] == [("openapi.yaml", "api")]
    finally:
        await rt.close()


def test_cli_ingest_reports_specs(settings, tmp_path, monkeypatch):
    bad = tmp_path / "broken.yaml"
    bad.write_bytes(BAD_SPEC)
    monkeypatch.setenv("SYLLABUS_NATS__URL", settings.nats.url)
    monkeypatch.setenv("SYLLABUS_STORE__PATH", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["ingest", str(EXAMPLE_SPEC), str(bad)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("submitted") and "(API spec: Hive API: 9 operations)" in lines[0]
    assert lines[1].startswith("rejected") and ("(invalid_spec: broken.yaml: paths./hives/{id}"
                                                ".get.parameters[0]: 'in' is a required "
                                                "property)") in lines[1]
