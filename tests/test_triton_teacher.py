"""The ``triton`` teacher against a real Triton Inference Server (the ``tritonserver``
binary from ``nvidia-pytriton``, on the CPU) serving scripted models
(tests/triton_server.py): the HTTP generate extension, the gRPC streaming infer of a
decoupled model, how generation parameters reach the model, every error class the
runtime's retries depend on, secrets, curl against Triton itself, and plugin loading.

One Triton serves the whole session (about 5 s to start, 5 s to stop)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient

from syllabus.contracts import (
    ChatMessage,
    GenerationParams,
    Teacher,
    TeacherError,
    TeacherFactory,
)
from syllabus.plugins.teachers import triton as triton_plugin
from syllabus.plugins.teachers.triton import (
    TritonTeacher,
    TritonTeacherFactory,
    render_prompt,
)
from tests.triton_server import (
    MODEL,
    STREAM_MODEL,
    ScriptedTriton,
    counted,
    echo_parameters,
    fail,
    slow,
    stream,
)

HELLO = [ChatMessage(role="system", content="Be brief."),
         ChatMessage(role="user", content="Say hello in three words")]
KEY = "tk-test-very-secret-0987654321"

MakeTeacher = Callable[..., TritonTeacher]


def ask(content: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=content)]


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def make_teacher(triton: ScriptedTriton) -> AsyncIterator[MakeTeacher]:
    """``make(**options)``: an HTTP-generate teacher for ``scripted`` unless told
    otherwise; ``protocol="grpc_stream"`` defaults to ``scripted_stream`` over gRPC."""
    made: list[TritonTeacher] = []

    def make(**options: Any) -> TritonTeacher:
        grpc = options.get("protocol") == "grpc_stream"
        defaults = {"model": STREAM_MODEL if grpc else MODEL,
                    "url": triton.grpc_url if grpc else triton.http_url}
        teacher = TritonTeacherFactory().create({**defaults, **options})
        made.append(teacher)
        return teacher

    yield make
    for teacher in made:
        await teacher.aclose()


async def fails(teacher: TritonTeacher, messages: list[ChatMessage] | None = None,
                **params: Any) -> TeacherError:
    with pytest.raises(TeacherError) as info:
        await teacher.complete(messages or HELLO, params=GenerationParams(**params))
    return info.value


# --- HTTP: Triton's generate extension -------------------------------------------------


async def test_http_generate_round_trip(triton, make_teacher):
    triton.replies["three words"] = "Hello there, friend"
    teacher = make_teacher()
    result = await teacher.complete(HELLO, params=GenerationParams())
    assert result.text == "Hello there, friend"
    assert result.model == MODEL and result.cached is False
    prompt = "<|system|>\nBe brief.\n<|user|>\nSay hello in three words\n<|assistant|>\n"
    [request] = triton.requests
    assert (request.model, request.prompt) == (MODEL, prompt)
    # no counts from the model: whitespace words of the prompt and the reply
    assert (result.prompt_tokens, result.completion_tokens) == (len(prompt.split()), 3)
    assert result.latency_seconds > 0


async def test_token_counts_from_the_model_win(triton, make_teacher):
    triton.replies["count"] = counted("four words right here", 17, 5)
    result = await make_teacher().complete(ask("count"), params=GenerationParams())
    assert (result.text, result.prompt_tokens, result.completion_tokens) == (
        "four words right here", 17, 5)
    # a stream's per-response counts add up
    triton.replies["count"] = counted("four words right here", 17, 9)
    result = await make_teacher(protocol="grpc_stream").complete(
        ask("count"), params=GenerationParams())
    assert (result.text, result.prompt_tokens, result.completion_tokens) == (
        "four words right here", 17, 9)


async def test_default_reply_and_client_reuse(triton, make_teacher):
    teacher = make_teacher()
    first = await teacher.complete(ask("ping one"), params=GenerationParams())
    client = teacher._http
    second = await teacher.complete(ask("ping two"), params=GenerationParams())
    assert (first.text, second.text) == ("echo: ping one", "echo: ping two")
    assert teacher._http is client and client is not None
    assert [r.prompt.split("\n")[1] for r in triton.requests] == ["ping one", "ping two"]


async def test_generation_params_reach_the_model(triton, make_teacher):
    """The default: the generate body's ``parameters``. Triton hands a key to the input of
    that name when the model has one (``scripted`` declares them all, as a TensorRT-LLM
    ensemble does); a list goes as JSON text, since request parameters are scalars."""
    triton.replies["show"] = echo_parameters
    teacher = make_teacher()
    params = GenerationParams(max_tokens=7, temperature=0.25, top_p=0.5)
    result = await teacher.complete(ask("show me"), params=params)
    echoed = json.loads(result.text)  # the model echoes what it received
    assert echoed == {"inputs": {"max_tokens": 7, "temperature": 0.25, "top_p": 0.5},
                      "parameters": {}}
    # stop (the reply is cut at a stop string, so read it from the model's record)
    await teacher.complete(ask("stop here"), params=GenerationParams(max_tokens=3,
                                                                      stop=["<END>"]))
    # an unset top_p is not sent
    assert triton.requests[-1].inputs == {"max_tokens": 3, "temperature": 0.0,
                                          "stop": '["<END>"]'}


async def test_renamed_and_extra_parameters_become_request_parameters(triton, make_teacher):
    triton.replies["show"] = echo_parameters
    teacher = make_teacher(parameters={"max_tokens": "max_new_tokens", "temperature": ""},
                           extra_parameters='{"exclude_input_in_output": true, "top_k": 5}')
    result = await teacher.complete(ask("show"), params=GenerationParams(max_tokens=9,
                                                                          temperature=0.7))
    echoed = json.loads(result.text)
    assert echoed["parameters"] == {"max_new_tokens": 9, "exclude_input_in_output": True,
                                    "top_k": 5}
    assert echoed["inputs"] == {}  # temperature unmapped: sent nowhere


async def test_parameters_as_inputs_sends_lists_as_tensors(triton, make_teacher):
    teacher = make_teacher(parameters_as="inputs")
    params = GenerationParams(max_tokens=11, stop=["A", "BB"], top_p=0.9)
    await teacher.complete(ask("inputs"), params=params)
    [request] = triton.requests
    assert request.inputs == {"max_tokens": 11, "temperature": 0.0,
                              "top_p": pytest.approx(0.9), "stop": ["A", "BB"]}
    assert request.parameters == {}


async def test_parameters_as_sampling_parameters_json(triton, make_teacher):
    teacher = make_teacher(parameters_as="sampling_parameters")
    params = GenerationParams(max_tokens=5, temperature=0.5, stop=["\n\n"])
    await teacher.complete(ask("sampling"), params=params)
    [request] = triton.requests
    # ``scripted`` has no such input, so Triton passes it on as a request parameter
    assert json.loads(request.parameters["sampling_parameters"]) == {
        "max_tokens": 5, "temperature": 0.5, "stop": ["\n\n"]}


async def test_model_version_is_in_the_path(triton, make_teacher):
    teacher = make_teacher(model_version=1)
    assert teacher.endpoint.endswith(f"/v2/models/{MODEL}/versions/1/generate")
    assert (await teacher.complete(ask("versioned"), params=GenerationParams())).text == \
        "echo: versioned"
    err = await fails(make_teacher(model_version="9"))
    assert err.retryable is False and err.status == 404
    assert "version 9 is not found" in str(err)


async def test_echoed_prompt_is_removed_and_stop_cuts_the_reply(triton, make_teacher):
    triton.replies["echo the prompt"] = lambda r: r.prompt + "The answer. STOP and more"
    teacher = make_teacher()
    messages = ask("echo the prompt")
    result = await teacher.complete(messages, params=GenerationParams())
    assert result.text == "The answer. STOP and more"
    result = await teacher.complete(messages, params=GenerationParams(stop=["zzz", "STOP"]))
    assert result.text == "The answer. "


async def test_plain_and_chatml_templates(triton, make_teacher):
    await make_teacher(chat_template="plain").complete(HELLO, params=GenerationParams())
    await make_teacher(chat_template="chatml").complete(HELLO, params=GenerationParams())
    plain, chatml = (r.prompt for r in triton.requests)
    assert plain == "system: Be brief.\nuser: Say hello in three words\nassistant:"
    assert chatml == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                      "<|im_start|>user\nSay hello in three words<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert render_prompt(HELLO, "plain") == plain


# --- HTTP errors -----------------------------------------------------------------------


async def test_missing_model_is_not_retryable(make_teacher):
    err = await fails(make_teacher(model="no_such_model"))
    assert err.retryable is False and err.status == 404
    assert "unknown model: 'no_such_model'" in str(err)


async def test_connection_refused_is_retryable(make_teacher):
    err = await fails(make_teacher(url=f"127.0.0.1:{_unused_port()}"))
    assert err.retryable is True and err.status is None
    assert "connection failed" in str(err)


async def test_slow_reply_times_out_as_retryable(triton, make_teacher):
    triton.replies["slowly"] = slow(1.5, "too late")
    err = await fails(make_teacher(timeout=0.3), ask("answer slowly"))
    assert err.retryable is True and "timed out after 0.3 s" in str(err)


async def test_model_error_is_not_retryable_and_carries_the_message(triton, make_teacher):
    triton.replies["explode"] = fail("scripted failure 42")
    err = await fails(make_teacher(), ask("explode"))
    assert err.retryable is False and err.status == 400
    assert "scripted failure 42" in str(err)


async def test_decoupled_model_through_generate_is_a_clear_error(make_teacher):
    err = await fails(make_teacher(model=STREAM_MODEL))
    assert err.retryable is False
    assert "exactly 1 response" in str(err)


async def test_wrong_output_name_is_not_retryable(make_teacher):
    err = await fails(make_teacher(output_name="generated_text"))
    assert err.retryable is False
    assert "no 'generated_text'" in str(err) and "text_output" in str(err)


# --- gRPC: a streaming infer of a decoupled model --------------------------------------


async def test_fixture_streams_in_chunks(triton):
    """The scripted decoupled model really sends several responses."""
    triton.replies["story"] = stream("once upon a time there was", chunks=4)
    pieces: list[str] = []

    async def requests():
        prompt = grpcclient.InferInput("text_input", [1], "BYTES")
        prompt.set_data_from_numpy(np.array([b"tell a story"], dtype=np.object_))
        yield {"model_name": STREAM_MODEL, "inputs": [prompt]}

    async with grpcaio.InferenceServerClient(triton.grpc_url) as client:
        async for result, error in client.stream_infer(requests(), stream_timeout=30):
            assert error is None
            pieces.append(result.as_numpy("text_output")[0].decode())
    assert len(pieces) == 4 and "".join(pieces) == "once upon a time there was"


async def test_grpc_stream_round_trip(triton, make_teacher):
    reply = "Streaming works: every delta arrives in order."
    triton.replies["three words"] = stream(reply, chunks=5)
    teacher = make_teacher(protocol="grpc_stream")
    params = GenerationParams(max_tokens=64, temperature=0.2, top_p=0.95, stop=["###"])
    result = await teacher.complete(HELLO, params=params)
    assert result.text == reply
    assert result.completion_tokens == len(reply.split())
    [request] = triton.requests
    assert request.model == STREAM_MODEL
    assert request.prompt == render_prompt(HELLO)
    # the vLLM backend's conventions: stream=true and a sampling_parameters JSON input
    assert request.inputs["stream"] is True
    assert json.loads(request.inputs["sampling_parameters"]) == {
        "max_tokens": 64, "temperature": 0.2, "top_p": 0.95, "stop": ["###"]}


async def test_grpc_stream_cumulative_output(triton, make_teacher):
    reply = "each response repeats the text so far"
    triton.replies["cumulative"] = stream(reply, chunks=4, cumulative=True)
    result = await make_teacher(protocol="grpc_stream").complete(
        ask("cumulative please"), params=GenerationParams())
    assert result.text == reply
    # forced to concatenate, the repeated prefixes show
    forced = await make_teacher(protocol="grpc_stream", stream_output="delta").complete(
        ask("cumulative please"), params=GenerationParams())
    assert forced.text != reply and forced.text.endswith(reply)
    assert forced.text.startswith(reply[:10] + reply[:10])


async def test_grpc_request_parameters(triton, make_teacher):
    teacher = make_teacher(protocol="grpc_stream", parameters_as="parameters",
                           extra_parameters={"exclude_input_in_output": True})
    await teacher.complete(ask("params"), params=GenerationParams(max_tokens=8, stop=["x"]))
    [request] = triton.requests
    assert request.parameters == {"max_tokens": 8, "temperature": 0.0, "stop": '["x"]',
                                  "exclude_input_in_output": True}
    assert set(request.inputs) == {"stream"}


async def test_grpc_inputs_to_a_model_that_does_not_stream(triton, make_teacher):
    """``scripted`` is not decoupled and has no ``stream`` input: the stream carries its
    one response, and the mapped values go as typed tensors."""
    triton.replies["typed"] = "typed tensors arrived"
    teacher = make_teacher(protocol="grpc_stream", model=MODEL, stream_input="",
                           parameters_as="inputs")
    params = GenerationParams(max_tokens=12, temperature=0.5, stop=["@@", "##"])
    result = await teacher.complete(ask("typed"), params=params)
    assert result.text == "typed tensors arrived"
    [request] = triton.requests
    assert request.inputs == {"max_tokens": 12, "temperature": 0.5, "stop": ["@@", "##"]}


async def test_grpc_missing_model_is_not_retryable(make_teacher):
    err = await fails(make_teacher(protocol="grpc_stream", model="no_such_model"))
    assert err.retryable is False
    assert "unknown model: 'no_such_model'" in str(err)


async def test_grpc_unexpected_input_is_not_retryable(make_teacher):
    # ``scripted`` declares no ``stream`` input
    err = await fails(make_teacher(protocol="grpc_stream", model=MODEL,
                                   parameters_as="parameters"))
    assert err.retryable is False
    assert "unexpected inference input 'stream'" in str(err)


async def test_grpc_connection_refused_is_retryable(make_teacher):
    err = await fails(make_teacher(protocol="grpc_stream", url=f"127.0.0.1:{_unused_port()}"))
    assert err.retryable is True
    assert (err.grpc_code, err.status) == ("UNAVAILABLE", 503)


async def test_grpc_deadline_is_retryable(triton, make_teacher):
    triton.replies["slowly"] = slow(1.5, "too late")
    err = await fails(make_teacher(protocol="grpc_stream", timeout=0.3), ask("answer slowly"))
    assert err.retryable is True
    assert (err.grpc_code, err.status) == ("DEADLINE_EXCEEDED", 504)
    assert "timed out after 0.3 s" in str(err)


async def test_grpc_model_error_is_not_retryable(triton, make_teacher):
    triton.replies["explode"] = fail("scripted stream failure 7")
    err = await fails(make_teacher(protocol="grpc_stream"), ask("explode"))
    assert err.retryable is False
    assert "scripted stream failure 7" in str(err)


@pytest.mark.parametrize(("code", "status", "retryable"), [
    ("UNAVAILABLE", 503, True), ("RESOURCE_EXHAUSTED", 429, True),
    ("DEADLINE_EXCEEDED", 504, True), ("INTERNAL", 500, True),
    ("INVALID_ARGUMENT", 400, False), ("NOT_FOUND", 404, False),
    ("UNAUTHENTICATED", 401, False)])
def test_grpc_codes_map_to_retryable_and_status(code, status, retryable):
    teacher = TritonTeacher(model="m", protocol="grpc_stream")

    class Error(Exception):
        def status(self) -> str:
            return f"StatusCode.{code}"

        def message(self) -> str:
            return "server said no"

    err = teacher._grpc_error(Error())
    assert (err.grpc_code, err.status, err.retryable) == (code, status, retryable)
    assert "server said no" in str(err)


# --- readiness, curl, secrets ----------------------------------------------------------


def test_tritonclient_sees_the_server_ready(triton):
    client = httpclient.InferenceServerClient(triton.http_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL) and client.is_model_ready(STREAM_MODEL)
        assert not client.is_model_ready("no_such_model")
        config = client.get_model_config(STREAM_MODEL)
        assert config["model_transaction_policy"]["decoupled"] is True
    finally:
        client.close()


async def test_teacher_ready(triton, make_teacher):
    assert await make_teacher().ready() is True
    assert await make_teacher(protocol="grpc_stream").ready() is True
    assert await make_teacher(model="no_such_model").ready() is False
    assert await make_teacher(url=f"127.0.0.1:{_unused_port()}").ready() is False
    assert await make_teacher(protocol="grpc_stream",
                              url=f"127.0.0.1:{_unused_port()}").ready() is False


def test_curl_reaches_the_generate_endpoint(triton):
    body = json.dumps({"text_input": "What is Triton?", "parameters": {"max_tokens": 5}})
    url = f"{triton.base_url}/v2/models/{MODEL}/generate"
    curl = shutil.which("curl")
    if curl is not None:
        done = subprocess.run([curl, "-sS", "--max-time", "30", "-X", "POST", url,
                               "-H", "Content-Type: application/json", "-d", body],
                              capture_output=True, text=True, timeout=60, check=True)
        reply = json.loads(done.stdout)
    else:  # no curl on this machine: the same request through httpx
        reply = httpx.post(url, content=body, timeout=30).json()
    assert reply["text_output"] == "echo: What is Triton?"
    assert reply["model_name"] == MODEL
    assert triton.requests[-1].inputs == {"max_tokens": 5}


@pytest.mark.parametrize("protocol", ["http_generate", "grpc_stream"])
async def test_headers_are_sent_and_secrets_never_shown(triton, make_teacher, protocol):
    triton.replies["show"] = echo_parameters
    teacher = make_teacher(protocol=protocol, model=MODEL, stream_input="",
                           parameters_as="parameters", api_key=KEY,
                           headers={"X-Syllabus-Token": KEY + "-header"})
    echoed = json.loads((await teacher.complete(ask("show"), params=GenerationParams())).text)
    if protocol == "grpc_stream":
        # Triton forwards x-syllabus-* metadata to the model as request parameters
        assert echoed["parameters"]["x-syllabus-token"] == KEY + "-header"
    else:
        # the generate extension forwards no headers to the model: check the client's
        assert teacher._http.headers["X-Syllabus-Token"] == KEY + "-header"
        assert teacher._http.headers["Authorization"] == f"Bearer {KEY}"
    refused = make_teacher(protocol=protocol, url=f"user:{KEY}@127.0.0.1:{_unused_port()}",
                           api_key=KEY, headers={"X-Syllabus-Token": KEY})
    err = await fails(refused)
    for shown in (repr(teacher), str(teacher), repr(refused), str(err), repr(err),
                  repr(vars(teacher)), teacher.url, refused.url):
        assert KEY not in shown


# --- configuration and loading ---------------------------------------------------------


def test_options_are_checked():
    factory = TritonTeacherFactory()
    for options in ({"url": "127.0.0.1:8000"}, {"model": "  "}):
        with pytest.raises(ValueError, match="'model' is required"):
            factory.create(options)
    bad = [({"protocol": "websocket"}, "protocol must be one of"),
           ({"parameters": {"seed": "seed"}}, "'seed' is not one"),
           ({"parameters_as": "headers"}, "parameters_as must be one of"),
           ({"extra_parameters": {"priority": 1}}, "priority cannot be sent"),
           ({"parameters": {"max_tokens": "triton_max"}}, "triton_max cannot be sent"),
           ({"stream_output": "lines"}, "stream_output must be one of"),
           ({"chat_template": "jinja"}, "chat_template must be one of"),
           ({"model_version": "latest"}, "model_version must be a positive"),
           ({"timeout": 0}, "timeout must be positive"),
           ({"url": "grpc://127.0.0.1:8001"}, "url for http_generate"),
           ({"url": "127.0.0.1"}, "must name a port"),
           ({"protocol": "grpc_stream", "url": "http://127.0.0.1:8001"}, "url for grpc_stream"),
           ({"extra_parameters": "[1]"}, "extra_parameters must be a mapping")]
    for options, message in bad:
        with pytest.raises(ValueError, match=message):
            factory.create({"model": "m", **options})


def test_defaults_and_options_from_strings():
    factory = TritonTeacherFactory()
    http = factory.create({"model": "ensemble"})
    assert (http.protocol, http.url, http.parameters_as) == (
        "http_generate", "http://127.0.0.1:8000", "parameters")
    assert http.endpoint == "http://127.0.0.1:8000/v2/models/ensemble/generate"
    grpc = factory.create({"model": "vllm_model", "protocol": "grpc_stream"})
    assert (grpc.url, grpc.parameters_as, grpc.stream_input) == (
        "grpc://127.0.0.1:8001", "sampling_parameters", "stream")
    custom = factory.create({"model": "m", "url": "https://triton.example:443/proxy/",
                             "timeout": "2.5", "batch_dim": "true", "model_version": "3",
                             "parameters": '{"max_tokens": "max_new_tokens"}'})
    assert custom.url == "https://triton.example:443/proxy"
    assert custom.endpoint == "https://triton.example:443/proxy/v2/models/m/versions/3/generate"
    assert (custom.timeout, custom.batch_dim) == (2.5, True)
    assert custom.parameter_names["max_tokens"] == "max_new_tokens"
    behind_proxy = factory.create({"model": "m", "url": "https://triton.example/v"})
    assert behind_proxy.endpoint == "https://triton.example/v/v2/models/m/generate"


async def test_the_teacher_satisfies_the_protocols(make_teacher):
    factory = TritonTeacherFactory()
    assert isinstance(factory, TeacherFactory) and factory.kind == "triton"
    teacher = make_teacher()
    assert isinstance(teacher, Teacher)
    assert (teacher.kind, teacher.model) == ("triton", MODEL)
    registered: list[Any] = []
    triton_plugin.register_teachers(register=registered.append)
    assert [type(obj) for obj in registered] == [TritonTeacherFactory]


async def test_loaded_through_its_entry_point(triton):
    """Needs ``triton-teacher = "syllabus.plugins.teachers.triton"`` under
    ``[project.entry-points.syllabus]`` (and a re-install)."""
    module = entry_points(group="syllabus")["triton-teacher"].load()
    assert module is triton_plugin
    registered: list[Any] = []
    module.register_teachers(register=registered.append)
    [factory] = registered
    assert isinstance(factory, TeacherFactory) and factory.kind == "triton"
    teacher = factory.create({"model": MODEL, "url": triton.http_url})
    try:
        assert isinstance(teacher, Teacher)
        assert (await teacher.complete(ask("via entry point"), params=GenerationParams())
                ).text == "echo: via entry point"
    finally:
        await teacher.aclose()



def test_plugin_manager_finds_the_factory():
    from syllabus.services.runtime import PluginManager

    pm = PluginManager(allow={"triton-teacher"})
    assert pm.errors == {}
    reg = pm.get("register_teachers", "triton")
    assert isinstance(reg.obj, TritonTeacherFactory)
    assert reg.plugin == "triton-teacher"
