"""The ``openai`` teacher against a real local server speaking the OpenAI protocol
(tests/openai_server.py): request shape, parsing, structured output and its fallback,
every error class the runtime's retries depend on, secrets, and plugin loading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from syllabus.contracts import (
    ChatMessage,
    GenerationParams,
    Teacher,
    TeacherError,
    TeacherFactory,
)
from syllabus.plugins.teachers.openai import OpenAITeacher, OpenAITeacherFactory
from tests.openai_server import (
    ScriptedOpenAI,
    error,
    json_reply,
    malformed,
    no_choices,
    parts,
    slow,
    text,
)

MODEL = "scripted-model"
KEY = "sk-test-very-secret-1234567890"
SCHEMA = {"title": "QA pairs", "type": "object",
          "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
          "required": ["question", "answer"]}
HELLO = [ChatMessage(role="system", content="Be brief."),
         ChatMessage(role="user", content="Say hello in three words")]

MakeTeacher = Callable[..., OpenAITeacher]


@pytest.fixture
async def make_teacher(openai_server: ScriptedOpenAI) -> AsyncIterator[MakeTeacher]:
    made: list[OpenAITeacher] = []

    def make(**options: Any) -> OpenAITeacher:
        options = {"url": openai_server.url, "model": MODEL, **options}
        teacher = OpenAITeacherFactory().create(options)
        made.append(teacher)
        return teacher

    yield make
    for teacher in made:
        await teacher.aclose()


async def _fails(teacher: OpenAITeacher, params: GenerationParams | None = None) -> TeacherError:
    with pytest.raises(TeacherError) as info:
        await teacher.complete(HELLO, params=params or GenerationParams())
    return info.value


# --- replies ---------------------------------------------------------------------------


async def test_plain_reply_and_the_request_it_sent(openai_server, make_teacher):
    openai_server.script(text("Hello there, friend", usage={"prompt_tokens": 17,
                                                            "completion_tokens": 4}))
    teacher = make_teacher()
    params = GenerationParams(temperature=0.3, max_tokens=64, top_p=0.9, stop=["\n\n"])

    done = await teacher.complete(HELLO, params=params)

    assert done.text == "Hello there, friend"
    assert done.model == MODEL
    assert (done.prompt_tokens, done.completion_tokens) == (17, 4)
    assert done.cached is False
    assert 0 < done.latency_seconds < 5
    [request] = openai_server.requests
    assert request.path == "/v1/chat/completions"
    body = request.json
    assert body["model"] == MODEL
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Say hello in three words"}]
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 64
    assert body["top_p"] == 0.9
    assert body["stop"] == ["\n\n"]
    assert "response_format" not in body
    assert "authorization" not in request.headers


async def test_optional_params_are_left_out_and_missing_usage_is_zero(openai_server,
                                                                      make_teacher):
    openai_server.script(text("no usage here", usage=False))
    done = await make_teacher().complete(HELLO, params=GenerationParams())
    assert done.text == "no usage here"
    assert (done.prompt_tokens, done.completion_tokens) == (0, 0)
    body = openai_server.requests[0].json
    assert "top_p" not in body and "stop" not in body


async def test_default_responder_and_client_reuse(openai_server, make_teacher):
    teacher = make_teacher()
    first = await teacher.complete(HELLO, params=GenerationParams())
    assert first.text == "Say hello in three words"  # the server echoes the last user turn
    openai_server.default = lambda request: f"{len(request['messages'])} messages"
    second = await teacher.complete(HELLO, params=GenerationParams())
    assert second.text == "2 messages"
    assert teacher._client is not None and not teacher._client.is_closed
    await teacher.aclose()
    assert teacher._client is None


async def test_content_as_a_list_of_parts_is_joined(openai_server, make_teacher):
    openai_server.script(parts("Hello, ", "world", "!"))
    done = await make_teacher().complete(HELLO, params=GenerationParams())
    assert done.text == "Hello, world!"


async def test_url_without_v1_gets_it(openai_server, make_teacher):
    teacher = make_teacher(url=openai_server.base_url + "/")
    assert teacher.url == openai_server.url
    assert (await teacher.complete(HELLO, params=GenerationParams())).text
    assert openai_server.requests[0].path == "/v1/chat/completions"


async def test_the_teacher_does_not_limit_concurrency_itself(openai_server,
                                                             make_teacher):
    openai_server.latency = 0.3
    openai_server.max_concurrency = 3
    teacher = make_teacher(concurrency=8)
    started = time.monotonic()
    done = await asyncio.gather(*(teacher.complete(
        [ChatMessage(role="user", content=f"n{i}")], params=GenerationParams()) for i in range(8)))
    elapsed = time.monotonic() - started
    assert sorted(c.text for c in done) == [f"n{i}" for i in range(8)]
    assert openai_server.peak_in_flight == 8  # all eight reached the server at once
    assert openai_server.peak_active == 3  # and it answered three at a time
    assert elapsed >= 0.85  # ceil(8 / 3) rounds of 0.3 s


# --- structured output -----------------------------------------------------------------


async def test_json_schema_is_requested_as_response_format(openai_server,
                                                           make_teacher):
    openai_server.script(json_reply({"question": "Q?", "answer": "A."}))
    teacher = make_teacher(json_mode="json_schema")
    done = await teacher.complete(HELLO, params=GenerationParams(json_schema=SCHEMA))
    assert done.text == '{"question": "Q?", "answer": "A."}'
    body = openai_server.requests[0].json
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "QA_pairs", "schema": SCHEMA, "strict": False}}


async def test_json_object_and_off_modes(openai_server, make_teacher):
    params = GenerationParams(json_schema=SCHEMA)
    await make_teacher(json_mode="json_object").complete(HELLO, params=params)
    await make_teacher(json_mode="off").complete(HELLO, params=params)
    first, second = (r.json for r in openai_server.requests)
    assert first["response_format"] == {"type": "json_object"}
    assert "response_format" not in second


async def test_auto_falls_back_to_json_object_and_remembers(openai_server,
                                                            make_teacher):
    openai_server.script(error(400, "response_format not supported"),
                         json_reply({"question": "Q?", "answer": "A."}),
                         json_reply({"question": "Q2?", "answer": "A2."}))
    teacher = make_teacher()  # json_mode defaults to auto
    params = GenerationParams(json_schema=SCHEMA)

    first = await teacher.complete(HELLO, params=params)
    assert first.text == '{"question": "Q?", "answer": "A."}'
    sent = [r.json["response_format"]["type"] for r in openai_server.requests]
    assert sent == ["json_schema", "json_object"]
    # llama-cpp-python's own form: json_object with the schema, enforced by a grammar
    assert openai_server.requests[1].json["response_format"]["schema"] == SCHEMA
    assert teacher.structured_output == "json_object_schema"

    second = await teacher.complete(HELLO, params=params)
    assert second.text == '{"question": "Q2?", "answer": "A2."}'
    assert len(openai_server.requests) == 3
    assert openai_server.requests[2].json["response_format"] == {"type": "json_object",
                                                                 "schema": SCHEMA}


async def test_auto_steps_down_to_no_response_format(openai_server, make_teacher):
    openai_server.script(error(400, "response_format: unknown variant `json_schema`"),
                         error(422, "response_format.schema is not allowed"),
                         error(422, "json_object is not supported by this backend"),
                         text('{"question": "Q?", "answer": "A."}'))
    teacher = make_teacher(json_mode="auto")
    done = await teacher.complete(HELLO, params=GenerationParams(json_schema=SCHEMA))
    assert done.text.startswith('{"question"')
    bodies = [r.json for r in openai_server.requests]
    assert [(b.get("response_format", {}).get("type"), "schema" in b.get("response_format", {}))
            for b in bodies] == [("json_schema", False), ("json_object", True),
                                 ("json_object", False), (None, False)]
    assert teacher.structured_output == "off"


async def test_auto_steps_down_on_a_500_that_names_response_format(openai_server,
                                                                   make_teacher):
    """llama-cpp-python's server answers a json_schema request with a 500 (its request
    model allows only 'text' or 'json_object'): that is a refusal of the format, not an
    outage, so the call steps down at once instead of being retried."""
    openai_server.script(
        error(500, "1 validation error: {'type': 'literal_error', 'loc': ('body', "
                   "'response_format', 'type'), 'msg': \"Input should be 'text' or "
                   "'json_object'\"}"),
        json_reply({"question": "Q?", "answer": "A."}))
    teacher = make_teacher()
    done = await teacher.complete(HELLO, params=GenerationParams(json_schema=SCHEMA))
    assert done.text == '{"question": "Q?", "answer": "A."}'
    assert len(openai_server.requests) == 2
    assert teacher.structured_output == "json_object_schema"


async def test_a_500_that_does_not_name_the_format_is_an_outage(openai_server, make_teacher):
    openai_server.script(error(500, "CUDA out of memory"))
    err = await _fails(make_teacher(), GenerationParams(json_schema=SCHEMA))
    assert err.retryable is True and err.status == 500
    assert len(openai_server.requests) == 1


async def test_explicit_json_schema_does_not_fall_back(openai_server, make_teacher):
    openai_server.script(error(400, "response_format not supported"))
    err = await _fails(make_teacher(json_mode="json_schema"),
                       GenerationParams(json_schema=SCHEMA))
    assert err.retryable is False and err.status == 400
    assert "response_format not supported" in str(err)
    assert len(openai_server.requests) == 1


# --- errors ----------------------------------------------------------------------------


async def test_429_is_retryable_with_retry_after(openai_server, make_teacher):
    openai_server.script(error(429, "Rate limit reached", retry_after=2, type="rate_limit"))
    err = await _fails(make_teacher())
    assert err.retryable is True
    assert err.status == 429
    assert err.retry_after == 2.0
    assert "Rate limit reached" in str(err)


@pytest.mark.parametrize("status", [408, 500, 502, 503])
async def test_server_errors_are_retryable(openai_server, make_teacher, status):
    openai_server.script(error(status, "overloaded", type="server_error"))
    err = await _fails(make_teacher())
    assert err.retryable is True
    assert err.status == status
    assert err.retry_after is None


async def test_503_retry_after_in_milliseconds(openai_server, make_teacher):
    openai_server.script(error(503, "busy", headers={"retry-after-ms": "1500"}))
    err = await _fails(make_teacher())
    assert err.retryable is True and err.retry_after == 1.5


async def test_client_errors_are_not_retryable_and_carry_the_message(openai_server,
                                                                     make_teacher):
    openai_server.script(error(400, "This model's maximum context length is 4096 tokens"),
                         error(404, "The model `nope` does not exist", type="NotFoundError"),
                         error(400, "x" * 2000))
    teacher = make_teacher()
    first = await _fails(teacher)
    assert first.retryable is False and first.status == 400
    assert "maximum context length is 4096 tokens" in str(first)
    second = await _fails(teacher)
    assert second.retryable is False and second.status == 404
    assert "does not exist" in str(second)
    third = await _fails(teacher)
    assert "x" * 499 in str(third) and "x" * 501 not in str(third)


@pytest.mark.parametrize("reply", [malformed(), malformed("<html>bad gateway</html>"),
                                   no_choices()], ids=["not-json", "html", "no-choices"])
async def test_malformed_200_is_retryable(openai_server, make_teacher, reply):
    openai_server.script(reply)
    err = await _fails(make_teacher())
    assert err.retryable is True
    assert "malformed response" in str(err)


async def test_slow_reply_times_out_as_retryable(openai_server, make_teacher):
    openai_server.script(slow(2.0))
    teacher = make_teacher(timeout=0.5)
    started = time.monotonic()
    err = await _fails(teacher)
    assert time.monotonic() - started < 1.5
    assert err.retryable is True and err.status is None
    assert "timed out" in str(err)


async def test_connection_refused_is_retryable(openai_server, make_teacher):
    teacher = make_teacher()
    assert (await teacher.complete(HELLO, params=GenerationParams())).text
    openai_server.stop()
    err = await _fails(teacher)
    assert err.retryable is True and err.status is None
    assert "connection failed" in str(err)


# --- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY, SecretStr(KEY)], ids=["str", "SecretStr"])
async def test_bearer_key_is_sent_and_never_shown(openai_server, make_teacher, key):
    openai_server.script(text("ok"),
                         error(401, f"Incorrect API key provided: {KEY}.",
                               type="invalid_api_key"))
    teacher = make_teacher(api_key=key, extra_headers={"X-Tenant": "bees"})

    assert (await teacher.complete(HELLO, params=GenerationParams())).text == "ok"
    headers = openai_server.requests[0].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["x-tenant"] == "bees"

    err = await _fails(teacher)
    assert err.retryable is False and err.status == 401
    assert "Incorrect API key provided" in str(err)
    for shown in (repr(teacher), str(teacher), str(err), repr(err), repr(vars(teacher))):
        assert KEY not in shown


# --- configuration and loading ---------------------------------------------------------


def test_missing_model_is_a_clear_error():
    factory = OpenAITeacherFactory()
    for options in ({"url": "http://127.0.0.1:1/v1"}, {"model": "  "}):
        with pytest.raises(ValueError, match="'model' is required"):
            factory.create(options)
    with pytest.raises(ValueError, match="json_mode must be one of"):
        factory.create({"model": "m", "json_mode": "xml"})
    with pytest.raises(ValueError, match="http"):
        factory.create({"model": "m", "url": "127.0.0.1:8000"})
    with pytest.raises(ValueError, match="timeout must be positive"):
        factory.create({"model": "m", "timeout": 0})


def test_options_from_strings():
    teacher = OpenAITeacherFactory().create({
        "model": "m", "url": "http://127.0.0.1:9/custom/v1/", "timeout": "2.5",
        "extra_headers": '{"X-A": "1"}'})
    assert teacher.url == "http://127.0.0.1:9/custom/v1"
    assert teacher.timeout == 2.5
    assert teacher._extra_headers == {"X-A": "1"}


async def test_loaded_through_its_entry_point(openai_server):
    [ep] = [ep for ep in entry_points(group="syllabus") if ep.name == "openai-teacher"]
    module = ep.load()
    registered: list[Any] = []
    module.register_teachers(register=registered.append)
    [factory] = registered
    assert isinstance(factory, TeacherFactory) and factory.kind == "openai"
    teacher = factory.create({"model": MODEL, "url": openai_server.url})
    try:
        assert isinstance(teacher, Teacher)
        assert (teacher.kind, teacher.model) == ("openai", MODEL)
        assert (await teacher.complete(HELLO, params=GenerationParams())).text
    finally:
        await teacher.aclose()


def test_plugin_manager_finds_the_factory():
    from syllabus.services.runtime import PluginManager

    pm = PluginManager(allow={"openai-teacher"})
    assert pm.errors == {}
    reg = pm.get("register_teachers", "openai")
    assert isinstance(reg.obj, OpenAITeacherFactory)
    assert reg.plugin == "openai-teacher"


def test_the_server_lists_models(openai_server):
    reply = httpx.get(openai_server.url + "/models", timeout=5)
    assert reply.status_code == 200
    assert [m["id"] for m in reply.json()["data"]] == [MODEL]
    assert openai_server.model_list_calls == 1


# --- base models: few-shot completion prompts on /v1/completions ----------------------


async def test_a_base_model_gets_the_completion_prompt_on_v1_completions(openai_server,
                                                                         make_teacher):
    openai_server.script(text(" What is the capital of France?"))
    teacher = make_teacher(base_model=True)
    params = GenerationParams(temperature=0.0, max_tokens=48, stop=["\n"],
                              prompt="Answer: Paris is the capital of France.\nQuestion:",
                              json_schema=SCHEMA)

    done = await teacher.complete(HELLO, params=params)

    assert teacher.base_model is True
    assert done.text == " What is the capital of France?"
    assert done.completion_tokens == 6
    [request] = openai_server.requests
    assert request.path == "/v1/completions"
    assert request.json["prompt"] == params.prompt
    assert request.json["stop"] == ["\n"] and request.json["max_tokens"] == 48
    # no messages and no structured output: the few-shot prompt sets the format
    assert "messages" not in request.json and "response_format" not in request.json


async def test_a_base_model_call_without_a_prompt_and_a_chat_model_use_chat(openai_server,
                                                                            make_teacher):
    openai_server.script(text("one"), text("two"))
    base, chat = make_teacher(base_model="true"), make_teacher()
    assert (await base.complete(HELLO, params=GenerationParams())).text == "one"
    assert (await chat.complete(HELLO, params=GenerationParams(prompt="ignored"))).text == "two"
    assert [r.path for r in openai_server.requests] == ["/v1/chat/completions"] * 2
    with pytest.raises(ValueError, match="base_model must be true or false"):
        make_teacher(base_model="maybe")


async def test_a_malformed_completions_reply_is_retryable(openai_server, make_teacher):
    openai_server.script(no_choices())
    error = await _fails(make_teacher(base_model=True), GenerationParams(prompt="Q:"))
    assert error.retryable and "choices[0].text" in str(error)
