"""Every HTTP service publishes ``GET /openapi.json``, and schemathesis holds each service
to it: generated requests (valid and invalid, every operation, its examples, coverage and
fuzzing phases) against the service as it runs (a real ``syllabus serve`` process, or the
service's own ASGI app under uvicorn, on a real nats-server and store; the server behind a
real Triton), and every answer must be

- no 5xx (``not_a_server_error``),
- a status, content type, headers and JSON body the schema documents
  (``status_code_conformance``, ``content_type_conformance``,
  ``response_headers_conformance``, ``response_schema_conformance``),
- a 4xx for a request the schema forbids (``negative_data_rejection``), a 401 without
  the token (``ignored_auth``), a 405 for an undocumented method (``unsupported_method``).

``OPENAPI_FUZZ_EXAMPLES`` (default 25) sets the fuzzing examples per operation (not
``SYLLABUS_...``: conftest clears those);
``OPENAPI_FUZZ_RANDOM=1`` draws new ones each run (by default the run is derandomised,
so CI sees the same requests every time).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from syllabus.services.runtime import free_port

from .test_http import ingest_pod  # noqa: F401 - the fixture

EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("OPENAPI_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          ignored_auth, unsupported_method]
TOKEN = "openapi-test-token"


@pytest.fixture(autouse=True)
def _node_id(request):
    """schemathesis 4.x's ``from_fixture`` names each operation's subtest through the
    node's ``_nodeid``, which pytest 9 no longer has: give it one."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def _config() -> schemathesis.Config:
    """Valid and invalid requests, in every phase but the stateful one (no links here)."""
    return schemathesis.Config.from_dict({
        "generation": {"mode": "all"},
        "phases": {"stateful": {"enabled": False}},
        # an invalid body that is also too large is refused by its size first
        "checks": {"negative_data_rejection": {"expected-statuses": [
            400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]}},
    })


def _checks(case) -> list:
    """``CHECKS``, but for a multipart body without ``negative_data_rejection``: in a form
    every value is text, so a value schemathesis made "of the wrong type" (a run_id of
    digits, an integer "file") is often valid once it is on the wire, and it would count
    the 202 as invalid data accepted. The fields' rules are tested directly in
    tests/test_http.py."""
    if case.media_type == "multipart/form-data":
        return [c for c in CHECKS if c is not negative_data_rejection]
    return CHECKS


def _load(base: str) -> schemathesis.BaseSchema:
    # /openapi.json is open: it loads without the token
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=_config(), timeout=30)
    assert schema.raw_schema["openapi"].startswith("3.1")
    return schema


# --- the ingest pod (a real `syllabus serve ingest` on real NATS and S3) -------------------


@pytest.fixture
def ingest_schema(ingest_pod):  # noqa: F811
    return _load(ingest_pod.base)


ingest_api = schemathesis.pytest.from_fixture("ingest_schema")


@ingest_api.parametrize()
@FUZZ
def test_ingest_conforms_to_its_schema(case, ingest_pod):  # noqa: F811
    case.call_and_validate(headers=ingest_pod.auth, checks=_checks(case), timeout=30)


def test_ingest_schema_describes_the_upload(ingest_pod):  # noqa: F811
    doc = httpx.get(f"{ingest_pod.base}/openapi.json").json()
    assert set(doc["paths"]) == {"/health/live", "/health/ready", "/metrics", "/openapi.json",
                                 "/v1/documents"}
    post = doc["paths"]["/v1/documents"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"]["items"]["format"] == "binary"
    assert form["properties"]["collection"]["pattern"] == "^[a-z0-9][a-z0-9_-]{0,63}$"
    assert "run_id" in form["properties"]
    assert {"202", "400", "401", "413", "415"} <= set(post["responses"])
    assert post["security"] == [{"bearer": []}]
    # the probes and the document itself need no token; the error shape is shared
    assert doc["paths"]["/health/live"]["get"]["security"] == []
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert doc["paths"]["/metrics"]["get"]["security"] == [{"bearer": []}]
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["message", "type", "param", "code"]
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http",
                                                               "scheme": "bearer"}}


# --- every other service: its own ASGI app under uvicorn, on real NATS and a local store ---


@contextlib.contextmanager
def _serving(app) -> Iterator[str]:
    """``app`` (with its lifespan: the bus connects) under uvicorn on a free port, in a
    thread; yields the base URL once it is ready."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# the server has its own tests below, behind a real Triton
OTHER_SERVICES = ["question-gen", "rationale", "sycophancy-filter", "api-annotator",
                  "dataset-builder", "trainer"]


@pytest.fixture(params=OTHER_SERVICES)
def service(request, settings):
    from syllabus.services.cli._serve import build_service_app

    s = settings.model_copy(deep=True)
    s.http.token = SecretStr(TOKEN)
    with _serving(build_service_app(request.param, s)) as base:
        yield request.param, base


@pytest.fixture
def service_schema(service):
    return _load(service[1])


service_api = schemathesis.pytest.from_fixture("service_schema")


@service_api.parametrize()
@FUZZ
def test_every_service_conforms_to_its_schema(case, service):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS,
                           timeout=30)


def test_every_service_publishes_its_routes(service):
    name, base = service
    doc = httpx.get(f"{base}/openapi.json").json()
    assert doc["info"]["title"] == f"syllabus {name}"
    assert {"/health/live", "/health/ready", "/metrics", "/openapi.json"} <= set(doc["paths"])
    if name == "trainer":
        status = doc["paths"]["/v1/training/status"]["get"]
        assert status["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/TrainingStatus"}
        assert "401" in status["responses"]
    # without the token: 401 in the error shape, as documented
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


# --- the server (a real `syllabus serve server` behind the embedded Triton) ----------------

GOOD = "bees-tiny-openapi"


@pytest.fixture(scope="module")
def server_pod(tmp_path_factory):
    """``syllabus serve server`` with one tiny model deployed; generations of at most 4
    tokens, so hundreds of generated requests stay quick."""
    from syllabus.contracts import TrainingCompleted

    from .server_fixtures import QA, start_pod, train_tiny, upload_eval, upload_model

    model_dir = train_tiny(tmp_path_factory.mktemp("model") / "hf", steps=20)
    with start_pod(tmp_path_factory.mktemp("server"), SYLLABUS_SERVER__MAX_TOKENS_LIMIT="4",
                   SYLLABUS_SERVER__DEFAULT_MAX_TOKENS="4",
                   SYLLABUS_SERVER__EVAL_SUITES="[]", SYLLABUS_SERVER__EVAL_FLOORS="{}") as pod:
        upload_eval(pod.store, "bees/v1", QA)
        prefix = upload_model(pod.store, GOOD, model_dir)
        pod.publish(TrainingCompleted(job_id="job-openapi", model_id=GOOD, store_prefix=prefix,
                                      dataset="bees/v1", metrics={"loss": 0.1}))
        deployed = pod.wait_deployed(GOOD)
        assert deployed.status == "deployed", deployed.reason
        yield pod


@pytest.fixture
def server_schema(server_pod):
    return _load(server_pod.base)


@pytest.fixture
def server_schema_with_its_model(server_pod):
    """The served schema with ``model`` narrowed to the deployed model, so that valid
    requests reach Triton and generate (with any model name they would mostly be 404s)."""
    doc = httpx.get(f"{server_pod.base}/openapi.json").json()
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        doc["components"]["schemas"][name]["properties"]["model"] = {"enum": [GOOD]}
    doc["paths"]["/v1/models/{model}"]["get"]["parameters"][0]["schema"] = {"enum": [GOOD]}
    schema = schemathesis.openapi.from_dict(doc, config=_config())
    schema.config.update(base_url=server_pod.base)
    return schema


server_api = schemathesis.pytest.from_fixture("server_schema")
server_api_with_its_model = schemathesis.pytest.from_fixture("server_schema_with_its_model")


@pytest.mark.slow
@server_api.parametrize()
@FUZZ
def test_server_conforms_to_its_schema(case, server_pod):
    case.call_and_validate(headers=server_pod.auth, checks=CHECKS, timeout=60)


@pytest.mark.slow
@server_api_with_its_model.include(path_regex="^/v1/").parametrize()
@FUZZ
def test_server_generates_as_its_schema_says(case, server_pod):
    case.call_and_validate(base_url=server_pod.base, headers=server_pod.auth, checks=CHECKS,
                           timeout=60)


@pytest.mark.slow
def test_server_schema_describes_the_openai_api(server_pod):
    doc = httpx.get(f"{server_pod.base}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models",
            "/v1/models/{model}"} <= set(doc["paths"])
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"}
    assert set(chat["responses"]["200"]["content"]) == {"application/json",
                                                        "text/event-stream"}
    assert {"400", "401", "404", "413", "429", "503"} <= set(chat["responses"])
    request = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert request["required"] == ["model", "messages"]
    # the limits are the server's settings
    assert request["properties"]["max_tokens"]["maximum"] == 4


def test_trainer_status_with_a_diverged_loss_is_json(settings):
    """A job whose loss went NaN: ``/v1/training/status`` answered a plain-text 500 (JSON
    has no NaN, and Starlette refuses to write one); now the NaN is null, and the body is
    what the schema says."""
    import math

    from syllabus.services.cli._serve import build_service_app
    from syllabus.services.trainer import job_status

    s = settings.model_copy(deep=True)
    s.http.token = SecretStr(TOKEN)
    app = build_service_app("trainer", s)
    status = job_status(app.state.runtime)
    status["current"] = {"job_id": "j2", "model_id": "m2", "dataset": "bees/v1",
                         "method": "lora", "processes": 2, "backend": "gloo", "step": 3,
                         "total_steps": 10, "loss": math.nan, "eval_loss": math.inf,
                         "tokens_per_second": 12.5, "started": time.time()}
    status["last"] = {"job_id": "j1", "model_id": "m1", "outcome": "completed",
                      "store_prefix": "models/m1/",
                      "metrics": {"train_loss_first": 2.5, "train_loss_last": math.nan,
                                  "losses": [1.0, -math.inf]}}
    with _serving(app) as base:
        r = httpx.get(f"{base}/v1/training/status",
                      headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["current"]["loss"] is None and body["current"]["eval_loss"] is None
        assert body["current"]["tokens_per_second"] == 12.5
        assert body["last"]["metrics"] == {"train_loss_first": 2.5, "train_loss_last": None,
                                           "losses": [1.0, None]}
        schema = _load(base)
        op = schema["/v1/training/status"]["GET"]
        op.validate_response(schemathesis.Response.from_any(r))
