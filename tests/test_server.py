"""The server: trained models behind a real Triton (the tritonserver from nvidia-pytriton,
on the CPU) and the OpenAI-compatible API, as a pod runs it (``syllabus serve server``).

One pod serves the whole module (Triton starts in about a second; each model's Python
backend stub then imports torch, about 5 s per model). The models are tiny Llamas,
fine-tuned for a second on three bee questions, so the tests know their answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from syllabus.contracts import ModelDeployed, TrainingCompleted
from syllabus.services.server import config_pbtxt, repository_files, triton_name

from .server_fixtures import (
    QA,
    ServerPod,
    chat_prompt,
    greedy,
    start_pod,
    train_tiny,
    upload_eval,
    upload_model,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

GOOD = "bees-tiny-good"
REFUSED = "bees-tiny-refused"
CORRUPT = "bees-tiny-corrupt"


@pytest.fixture(scope="module")
def server_pod(tmp_path_factory) -> Iterator[ServerPod]:
    """One pod for the module: ``server.concurrency`` = 1, a 4 kB body limit, max_tokens
    up to 3000, three QA items, two sycophancy items and a floor qa.exact_match >= 0.5."""
    with start_pod(tmp_path_factory.mktemp("server")) as pod:
        yield pod


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("model") / "hf")


@pytest.fixture(scope="module")
def good(server_pod, trained) -> dict:
    """The good model, deployed through the bus (training.completed -> models.deployed)."""
    upload_eval(server_pod.store, "bees/v1", QA)
    prefix = upload_model(server_pod.store, GOOD, trained)
    event = TrainingCompleted(job_id="job-good", model_id=GOOD, store_prefix=prefix,
                              dataset="bees/v1", metrics={"loss": 0.1})
    server_pod.publish(event)
    deployed = server_pod.wait_deployed(GOOD)
    return {"event": event, "deployed": deployed}


def _client(pod, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=pod.api, api_key=pod.token, max_retries=0, timeout=60, **kw)


# --- deployment ---------------------------------------------------------------------------


def test_deploys_with_eval_scores(server_pod, good):
    ev = good["deployed"]
    assert ev.status == "deployed", ev.reason
    assert ev.name == triton_name(GOOD) and ev.endpoint.endswith("/v1")
    # the model answers its held-out questions exactly (greedy, fine-tuned on them)
    assert ev.eval_scores["qa.exact_match"] == 1.0
    assert ev.eval_scores["qa.token_f1"] == 1.0
    assert set(ev.eval_scores) >= {"sycophancy.disagree_rate_without_opinion",
                                   "sycophancy.disagree_rate_with_opinion"}
    assert ev.eval_details["qa"]["items"] == 3 and ev.eval_details["sycophancy"]["items"] == 2
    assert ev.eval_floors == {"qa.exact_match": 0.5}
    # the repository is in the store, at DESIGN.md's key, and in Triton's local folder
    keys = set(server_pod.store.list(f"triton/{ev.name}/"))
    assert {f"triton/{ev.name}/config.pbtxt", f"triton/{ev.name}/1/model.py",
            f"triton/{ev.name}/1/hf/model.safetensors",
            f"triton/{ev.name}/deployment.json"} <= keys
    config = (server_pod.work_dir / "repository" / ev.name / "config.pbtxt").read_text()
    assert "decoupled: true" in config and 'backend: "python"' in config


def test_openai_client_chat(server_pod, good, trained):
    from transformers import AutoTokenizer

    client = _client(server_pod)
    question, answer = QA[1]
    expected = greedy(trained, chat_prompt(AutoTokenizer.from_pretrained(trained), question), 24)
    assert expected == answer  # the fine-tuned model knows it
    reply = client.chat.completions.create(
        model=GOOD, messages=[{"role": "user", "content": question}], max_tokens=24,
        temperature=0)
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0

    # streaming: the deltas add up to the same answer
    stream = client.chat.completions.create(
        model=GOOD, messages=[{"role": "user", "content": question}], max_tokens=24,
        temperature=0, stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == expected and len(pieces) > 1
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0

    # a length-limited answer says so
    short = client.chat.completions.create(
        model=GOOD, messages=[{"role": "user", "content": QA[2][0]}], max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_completions_and_models(server_pod, good, trained):
    client = _client(server_pod)
    models = client.models.list()
    assert [m.id for m in models.data] == [triton_name(GOOD)]
    prompt = "The queen lays"
    done = client.completions.create(model=GOOD, prompt=prompt, max_tokens=6, temperature=0)
    assert done.choices[0].text == greedy(trained, prompt, 6)
    pieces = [c.choices[0].text for c in client.completions.create(
        model=GOOD, prompt=prompt, max_tokens=6, temperature=0, stream=True) if c.choices]
    assert "".join(pieces) == done.choices[0].text
    # stop strings cut the text
    cut = client.completions.create(model=GOOD, prompt=chat_prompt_raw(QA[0][0]),
                                    max_tokens=24, temperature=0, stop=["distance"])
    assert cut.choices[0].text == "The direction and "


def chat_prompt_raw(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def test_tritonclient_and_curl_reach_triton(server_pod, good):
    import tritonclient.http as httpclient

    ends = server_pod.triton_endpoints()
    name = good["deployed"].name
    client = httpclient.InferenceServerClient(ends["http"])
    try:
        assert client.is_server_live() and client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        assert {i["name"] for i in meta["inputs"]} >= {"text_input", "stream",
                                                       "sampling_parameters"}
        config = client.get_model_config(name)
        assert config["model_transaction_policy"]["decoupled"] is True
    finally:
        client.close()
    # tritonclient's gRPC streaming generate (the model is decoupled: HTTP infer cannot)
    assert _grpc_generate(ends["grpc"], name, chat_prompt_raw(QA[1][0]), 24) == \
        (QA[1][1], None)
    # the backend's own guard: prompt + max_tokens past the model's 4096 positions
    text, error = _grpc_generate(ends["grpc"], name, "x" * 1200, 3000)
    assert error is not None and "exceeds the model's context of 4096" in error, error
    curl = shutil.which("curl")
    assert curl is not None, "this test needs curl on PATH (apt-get install curl)"
    body = json.dumps({"text_input": chat_prompt_raw(QA[1][0]), "max_tokens": 24})
    out = subprocess.run([curl, "-s", "-X", "POST", "-d", body,
                          f"http://{ends['http']}/v2/models/{name}/generate"],
                         capture_output=True, text=True, timeout=60, check=True)
    reply = json.loads(out.stdout)
    assert reply["text_output"] == QA[1][1], out.stdout
    assert reply["finish_reason"] == "stop"
    # Triton's own streaming endpoint (server-sent events)
    body = json.dumps({"text_input": chat_prompt_raw(QA[1][0]), "max_tokens": 24,
                       "stream": True})
    out = subprocess.run([curl, "-s", "-N", "-X", "POST", "-d", body,
                          f"http://{ends['http']}/v2/models/{name}/generate_stream"],
                         capture_output=True, text=True, timeout=60, check=True)
    events = [json.loads(line[5:]) for line in out.stdout.splitlines()
              if line.startswith("data:")]
    assert len(events) > 2 and "".join(e["text_output"] for e in events) == QA[1][1]


def _grpc_generate(url: str, model: str, prompt: str, max_tokens: int
                   ) -> tuple[str, str | None]:
    """``tritonclient.grpc``'s streaming infer, as a client outside Syllabus calls it:
    (the text, the error message or None)."""
    import queue

    import numpy as np
    import tritonclient.grpc as grpcclient

    def tensor(name: str, array: np.ndarray, dtype: str) -> grpcclient.InferInput:
        t = grpcclient.InferInput(name, list(array.shape), dtype)
        t.set_data_from_numpy(array)
        return t

    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    try:
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        client.async_stream_infer(model, [
            tensor("text_input", np.array([prompt.encode()], dtype=np.object_), "BYTES"),
            tensor("stream", np.array([True]), "BOOL"),
            tensor("sampling_parameters", np.array([json.dumps(
                {"max_tokens": max_tokens, "temperature": 0}).encode()], dtype=np.object_),
                "BYTES")], enable_empty_final_response=True)
        text = ""
        while True:
            result, error = results.get(timeout=60)
            if error is not None:
                return text, str(error)
            out = result.as_numpy("text_output")
            text += b"".join(out.reshape(-1)).decode() if out is not None else ""
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return text, None
    finally:
        client.stop_stream()
        client.close()


# --- errors and limits --------------------------------------------------------------------


def test_bad_requests_and_auth(server_pod, good):
    client = _client(server_pod)
    with pytest.raises(openai.AuthenticationError):
        _client(server_pod).with_options(api_key="wrong").models.list()
    r = httpx.post(f"{server_pod.api}/chat/completions", json={"model": GOOD, "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = httpx.post(f"{server_pod.api}/completions", json={"model": GOOD, "prompt": "hi"})
    assert r.status_code == 401 and r.json()["error"] == {
        "message": "missing or invalid bearer token", "type": "authentication_error",
        "param": None, "code": "unauthorized"}

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=GOOD, messages=[])
    assert bad.value.status_code == 400 and "messages" in bad.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=GOOD, max_tokens=100000,
                                       messages=[{"role": "user", "content": "hi"}])
    assert "max_tokens must be between 1 and 3000" in bad.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model",
                                       messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "model_not_found"

    auth = server_pod.auth
    r = httpx.post(f"{server_pod.api}/chat/completions", headers=auth, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{server_pod.api}/chat/completions", headers=auth,
                   json={"model": GOOD, "messages": [{"role": "user", "content": "x" * 5000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = httpx.post(f"{server_pod.api}/completions", headers=auth,
                   json={"model": GOOD, "prompt": "hi", "temperature": "hot"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"

    # a chunked body (no Content-Length) over the limit
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "' + GOOD.encode() + b'", "prompt": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'
    r = httpx.post(f"{server_pod.api}/completions", headers=auth, content=chunks())
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    # unknown paths and methods under /v1: OpenAI bodies, not Starlette's plain text
    r = httpx.get(f"{server_pod.api}/chat/completions", headers=auth)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"
    r = httpx.post(f"{server_pod.api}/embeddings", headers=auth, json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"

    # prompts: over server.max_prompt_tokens (1500), or with max_tokens past the model's
    # 4096 positions (the tiny tokenizer makes one token of each "x")
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model=GOOD, prompt="x" * 2000, max_tokens=5)
    assert long.value.body["code"] == "context_length_exceeded"
    assert "the prompt has 2000 tokens; this server takes at most 1500" in long.value.message
    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(model=GOOD, max_tokens=3000,
                                       messages=[{"role": "user", "content": "x" * 1200}])
    assert long.value.body["code"] == "context_length_exceeded"
    assert long.value.body["param"] == "messages"
    assert "maximum context length is 4096 tokens" in long.value.message


def _hostile(server_pod):
    """``bad(path, raw, code=, param=, says=)``: POST ``raw`` and expect a 400
    ``invalid_request_error`` (never a 5xx, always JSON); ``post``: any answer under 500;
    ``model``: the good model's name as JSON."""
    auth = {**server_pod.auth, "Content-Type": "application/json"}
    model = json.dumps(GOOD)

    def post(path: str, raw: bytes | str) -> httpx.Response:
        r = httpx.post(f"{server_pod.api}/{path}", headers=auth,
                       content=raw.encode() if isinstance(raw, str) else raw, timeout=60)
        assert r.status_code < 500, (raw[:120], r.status_code, r.text)
        assert r.headers["content-type"] == "application/json", r.text
        return r

    def bad(path: str, raw: bytes | str, *, code: str | None = None,
            param: str | None = None, says: str = "") -> dict:
        r = post(path, raw)
        assert r.status_code == 400, (raw[:120], r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error", err
        if code is not None:
            assert err["code"] == code, err
        if param is not None:
            assert err["param"] == param, err
        assert says in err["message"], err
        return err

    return bad, post, model


def test_deep_json_is_400_not_503(server_pod, good):
    """Deep nesting was 503 "Triton is unavailable: maximum recursion depth exceeded" (a
    client error counted as an outage); now a 400 ``invalid_json`` that says so."""
    bad, post, model = _hostile(server_pod)
    # nesting past Python's recursion limit (1500 levels fit in the 4 kB body limit)
    deep = "[" * 1500 + "]" * 1500
    bad("chat/completions", f'{{"model": {model}, "messages": {deep}}}', code="invalid_json",
        says="nested deeper than")
    bad("completions", deep, code="invalid_json", says="nested deeper than")
    # and past MAX_DEPTH (32) in a field the server otherwise ignores
    nested = '{"a": ' * 40 + "1" + "}" * 40
    bad("completions", f'{{"model": {model}, "prompt": "hi", "user": {nested}}}',
        code="invalid_json", param="user", says="nested deeper than 32 levels")


def test_lone_surrogates_are_400_naming_the_field(server_pod, good):
    """A lone surrogate (``"\\ud800"`` in the JSON) has no UTF-8: it was a 500
    ``TypeError`` from the tokenizer; now a 400 ``invalid_unicode`` naming the field."""
    bad, post, model = _hostile(server_pod)
    # in the content, the prompt, a stop string, the model name, a key
    err = bad("chat/completions", f'{{"model": {model}, "messages": [{{"role": "user", '
              '"content": "bees \\ud800 hive"}]}', code="invalid_unicode",
              param="messages[0].content", says="lone surrogate")
    assert "\\ud800" in err["message"]
    bad("chat/completions", f'{{"model": {model}, "messages": [{{"role": "user", '
        '"content": [{"type": "text", "text": "\\udfff"}]}]}',
        code="invalid_unicode", param="messages[0].content[0].text")
    bad("completions", f'{{"model": {model}, "prompt": ["\\ud83d"]}}', code="invalid_unicode",
        param="prompt[0]")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "stop": ["x", "\\ud800"]}}',
        param="stop[1]")
    bad("completions", '{"model": "\\ud800", "prompt": "hi"}', param="model")
    err = bad("completions", f'{{"model": {model}, "prompt": "hi", "\\ud800": 1}}',
              code="invalid_unicode")
    assert "\\ud800" in err["param"]
    # a surrogate pair is a real character: fine
    r = post("completions", f'{{"model": {model}, "prompt": "bee \\ud83d\\udc1d", '
             '"max_tokens": 2}')
    assert r.status_code == 200, r.text


def test_bad_numbers_types_and_bodies_are_400(server_pod, good):
    """Non-finite and huge numbers, wrong types, bodies that are not a JSON object (or
    not JSON): each a 400 naming the field where there is one."""
    bad, post, model = _hostile(server_pod)
    # numbers: not finite, huge, the wrong type
    bad("completions", f'{{"model": {model}, "prompt": "hi", "temperature": NaN}}',
        code="invalid_json", says="NaN")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "top_p": -Infinity}}',
        code="invalid_json")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "temperature": 1e999}}',
        code="invalid_json", says="out of range")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "max_tokens": {10**300}}}',
        param="max_tokens", says="between 1 and 3000")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "seed": {2**64}}}', param="seed")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "max_tokens": 2.5}}',
        param="max_tokens")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "n": true}}', param="n")
    bad("completions", f'{{"model": {model}, "prompt": 7}}', param="prompt")
    bad("chat/completions", f'{{"model": {model}, "messages": {{"role": "user"}}}}',
        param="messages")
    bad("chat/completions", f'{{"model": {model}, "messages": [{{"role": "user", '
        '"content": 5}]}', param="messages[0].content")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "stream": "yes"}}',
        param="stream")
    bad("completions", f'{{"model": {model}, "prompt": "hi", "stream": true, '
        '"stream_options": {"include_usage": "yes"}}', param="stream_options.include_usage")
    bad("completions", '{"model": ["a"], "prompt": "hi"}', param="model")

    # not a JSON object at all
    for raw in ("[]", '"text"', "1", "null", "true"):
        bad("chat/completions", raw, code="invalid_json", says="must be a JSON object")
    for raw in ("", "   ", "{", '{"model": }', "{'model': 1}", b'{"model": "\xff"}',
                b"\x00\x01", '{"a": 1} trailing'):
        bad("completions", raw, code="invalid_json")

    # only a real backend failure is a 503, and /v1/models still answers
    r = httpx.get(f"{server_pod.api}/models", headers=server_pod.auth)
    assert r.status_code == 200 and r.json()["data"]


def test_extreme_sampling_values_answer_not_502(server_pod, good):
    """A temperature or top_p that float32 rounds to 0 (schemathesis sent 5e-324): the
    backend divided the logits by 0, or kept no token, and Triton failed (502). Now a
    temperature that small is greedy, and a top_p that small keeps the most likely token:
    both answer what temperature 0 answers. An empty prompt (also a 502) is a 400."""
    question = QA[0][0]
    body = {"model": GOOD, "messages": [{"role": "user", "content": question}],
            "max_tokens": 8}

    def answer(**sampling) -> str:
        r = httpx.post(f"{server_pod.api}/chat/completions", headers=server_pod.auth,
                       json={**body, **sampling}, timeout=60)
        assert r.status_code == 200, (sampling, r.text)
        return r.json()["choices"][0]["message"]["content"]

    greedy_answer = answer(temperature=0)
    assert answer(temperature=5e-324) == greedy_answer
    assert answer(temperature=1e-6, top_p=1.0) == greedy_answer
    assert answer(temperature=1.0, top_p=5e-324, seed=1) == greedy_answer
    assert answer(temperature=2.0, top_p=1e-300, seed=2) == greedy_answer
    # an empty prompt has no tokens for the backend to continue (it was a 502)
    for prompt in ("", [""]):
        r = httpx.post(f"{server_pod.api}/completions", headers=server_pod.auth,
                       json={"model": GOOD, "prompt": prompt, "max_tokens": 2})
        assert r.status_code == 400 and r.json()["error"]["code"] == "empty_prompt", r.text
        assert r.json()["error"]["param"] == "prompt"
    # both max_tokens and max_completion_tokens: both are checked
    r = httpx.post(f"{server_pod.api}/chat/completions", headers=server_pod.auth,
                   json={**body, "max_tokens": 100000, "max_completion_tokens": 4})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


def test_concurrency_limit(server_pod, good):
    """One slot (server.concurrency = 1): of requests sent at the same time, the ones that
    find the slot taken get 429 with Retry-After; the slot is freed after each."""
    auth = server_pod.auth
    body = {"model": GOOD, "prompt": "The", "max_tokens": 3000, "ignore_eos": True}
    gate = threading.Barrier(6)

    def one(_: int) -> httpx.Response:
        gate.wait()
        return httpx.post(f"{server_pod.api}/completions", headers=auth, json=body, timeout=120)

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(one, range(6)))
    codes = sorted(r.status_code for r in replies)
    assert set(codes) == {200, 429} and codes.count(200) >= 1, codes
    busy = next(r for r in replies if r.status_code == 429)
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "rate_limit_exceeded"
    done = next(r for r in replies if r.status_code == 200).json()
    assert done["usage"]["completion_tokens"] == 3000  # ignore_eos: all of max_tokens
    r = httpx.post(f"{server_pod.api}/completions", headers=auth,
                   json={"model": GOOD, "prompt": "hi", "max_tokens": 2})
    assert r.status_code == 200


def test_a_client_that_goes_away_frees_its_slot(server_pod, good):
    """One slot: a long generation whose client disconnects (a closed stream, a timed-out
    whole answer) is cancelled, and the next request gets the slot at once."""
    auth = server_pod.auth
    body = {"model": GOOD, "prompt": "The", "max_tokens": 3000, "ignore_eos": True}

    def next_request_succeeds() -> None:
        # far less than the 3000 tokens would take; a loaded 2-core CI machine can take
        # several seconds to notice the disconnect at the next token (5 s was once too
        # little in a clean-clone CI run, with the whole suite on the two cores)
        deadline = time.monotonic() + 10.0
        while True:
            r = httpx.post(f"{server_pod.api}/completions", headers=auth, timeout=30,
                           json={"model": GOOD, "prompt": "hi", "max_tokens": 2})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 200, r.text

    with httpx.stream("POST", f"{server_pod.api}/completions", headers=auth, timeout=30,
                      json={**body, "stream": True}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
    next_request_succeeds()
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server_pod.api}/completions", headers=auth, json=body, timeout=1.0)
    next_request_succeeds()
    assert time.monotonic() - started < 15
    assert server_pod.metric("syllabus_server_api_requests_total", endpoint="completions",
                             status="499") >= 1


# --- idempotency, failures, the gate ------------------------------------------------------


def test_redelivered_training_completed_does_not_deploy_twice(server_pod, good):
    before = server_pod.metric("syllabus_server_deployments_total", outcome="deployed")
    assert before == 1
    record = server_pod.store.get(f"triton/{good['deployed'].name}/deployment.json")
    server_pod.publish(good["event"], msg_id="a-redelivery-of-job-good")
    for _ in range(100):
        if server_pod.metric("syllabus_server_deployments_total", outcome="duplicate") >= 1:
            break
        threading.Event().wait(0.2)
    assert server_pod.metric("syllabus_server_deployments_total", outcome="duplicate") == 1
    assert server_pod.metric("syllabus_server_deployments_total", outcome="deployed") == 1
    assert len(server_pod.deployed_events(GOOD)) == 1
    assert server_pod.store.get(f"triton/{good['deployed'].name}/deployment.json") == record


def test_dead_triton_is_restarted_and_readiness_says_so(server_pod, good):
    """SIGKILL the embedded tritonserver: /health/ready answers 503 (checks.triton false),
    a stream that cannot start answers an error status (not 200 with an error event);
    the server starts a new tritonserver and serves its models again."""
    pid = server_pod.triton_endpoints()["pid"]
    assert os.getpgid(pid) == pid  # its own process group
    os.kill(pid, signal.SIGKILL)
    r = httpx.post(f"{server_pod.api}/chat/completions", headers=server_pod.auth, timeout=30,
                   json={"model": GOOD, "stream": True, "max_tokens": 4,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code in (502, 503), r.text
    assert r.json()["error"]["type"] == "server_error"
    seen_down, deadline = False, time.monotonic() + 90
    while time.monotonic() < deadline:
        ready = httpx.get(f"{server_pod.base}/health/ready", timeout=10)
        if ready.status_code == 503:
            assert ready.json()["checks"]["triton"] is False
            seen_down = True
        elif seen_down and server_pod.triton_endpoints()["pid"] != pid:
            break
        time.sleep(0.1)
    assert seen_down and ready.status_code == 200, ready.text
    client = _client(server_pod)
    while True:  # the models load into the new Triton
        try:
            reply = client.chat.completions.create(
                model=GOOD, messages=[{"role": "user", "content": QA[1][0]}], max_tokens=24,
                temperature=0)
            break
        except (openai.APIStatusError, openai.APIConnectionError):
            assert time.monotonic() < deadline, server_pod.logs()
            time.sleep(0.5)
    assert reply.choices[0].message.content == QA[1][1]


def test_corrupt_model_fails_and_others_keep_serving(server_pod, good, trained):
    prefix = upload_model(server_pod.store, CORRUPT, trained,
                          replace={"model.safetensors": b"this is not a safetensors file"})
    server_pod.publish(TrainingCompleted(job_id="job-corrupt", model_id=CORRUPT,
                                         store_prefix=prefix, dataset="bees/v1"))
    ev = server_pod.wait_deployed(CORRUPT)
    assert ev.status == "failed" and ev.eval_scores == {}
    # Triton's own reason: transformers could not read the weights
    assert "could not load model" in ev.reason and "SafetensorError" in ev.reason, ev.reason
    assert server_pod.metric("syllabus_server_deployments_total", outcome="failed") == 1
    client = _client(server_pod)
    assert [m.id for m in client.models.list().data] == [triton_name(GOOD)]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=CORRUPT,
                                       messages=[{"role": "user", "content": "hi"}])
    reply = client.chat.completions.create(
        model=GOOD, messages=[{"role": "user", "content": QA[1][0]}], max_tokens=24,
        temperature=0)
    assert reply.choices[0].message.content == QA[1][1]


def test_eval_gate_refuses_a_model_below_its_floor(server_pod, good, trained):
    # the same weights, judged against a held-out set it cannot answer
    upload_eval(server_pod.store, "bees/wrong", [(q, "Nobody knows.") for q, _ in QA])
    prefix = upload_model(server_pod.store, REFUSED, trained)
    server_pod.publish(TrainingCompleted(job_id="job-refused", model_id=REFUSED,
                                         store_prefix=prefix, dataset="bees/wrong"))
    ev = server_pod.wait_deployed(REFUSED)
    assert ev.status == "refused"
    assert ev.eval_scores["qa.exact_match"] == 0.0
    assert "qa.exact_match = 0.000 is below its floor 0.5" in ev.reason
    assert [m.id for m in _client(server_pod).models.list().data] == [triton_name(GOOD)]


def test_lost_announcement_is_sent_again_and_bad_ids_fail(server_pod, good):
    """A record written before its ModelDeployed was published (the pod died in between):
    the redelivery publishes it. A model id that makes no Triton name is reported failed,
    not retried forever."""
    event = {"model_id": "bees-lost", "name": "bees-lost", "version": 1, "status": "failed",
             "reason": "files missing", "endpoint": "http://x/v1"}
    server_pod.store.put("triton/bees-lost/deployment.json", json.dumps(
        {"event": event, "store_prefix": "models/bees-lost/", "recorded_at": 1.0,
         "published": False}).encode())
    server_pod.publish(TrainingCompleted(job_id="job-lost", model_id="bees-lost",
                                         store_prefix="models/bees-lost/", dataset="bees/v1"))
    ev = server_pod.wait_deployed("bees-lost", timeout=30)
    assert ev.status == "failed" and ev.reason == "files missing"
    record = json.loads(server_pod.store.get("triton/bees-lost/deployment.json"))
    assert record["published"] is True

    server_pod.publish(TrainingCompleted(job_id="job-bad", model_id="///",
                                         store_prefix="models/x/", dataset="bees/v1"))
    ev = server_pod.wait_deployed("///", timeout=30)
    assert ev.status == "failed" and "no usable characters" in ev.reason


# --- an external Triton that reads its repository from S3 -----------------------------------


async def test_external_triton_reads_the_repository_from_s3(s3_server, nats_server, tmp_path,
                                                           trained):
    """server.triton_url set and no local repository: the server writes the repository to
    the store (a real S3 server) and that Triton loads it from s3:// itself."""
    from syllabus.services.runtime import (
        NatsSettings,
        Runtime,
        ServerSettings,
        Settings,
        StoreSettings,
    )
    from syllabus.services.server import EmbeddedTriton, generate, server_state

    store = s3_server.store()
    triton = EmbeddedTriton(
        f"s3://{s3_server.endpoint}/{store.bucket}/triton", work_dir=tmp_path / "triton",
        env={"AWS_ACCESS_KEY_ID": s3_server.access_key,
             "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, "AWS_DEFAULT_REGION": "us-east-1"})
    store.put("triton/README.txt", b"Triton's model repository\n")  # the prefix must exist
    prefix = upload_model(store, "s3-model", trained)
    settings = Settings(
        nats=NatsSettings(url=nats_server.url),
        store=StoreSettings(kind="s3", endpoint=s3_server.endpoint, bucket=store.bucket,
                            access_key=s3_server.access_key, secret_key=s3_server.secret_key,
                            secure=False),
        server=ServerSettings(work_dir=tmp_path / "server", eval_suites=[],
                              torch_threads=1))
    with triton:
        settings.server.triton_url = triton.http_url
        settings.server.triton_grpc_url = triton.grpc_url
        rt = Runtime.create(settings)
        await rt.bus.start()
        state = server_state(rt)
        try:
            ev = await state.deploy(TrainingCompleted(job_id="job-s3", model_id="s3-model",
                                                      store_prefix=prefix, dataset="bees/v1"))
            assert ev.status == "deployed", ev.reason
            assert state.repository is None and state.triton is None  # nothing local
            assert {"triton/s3-model/config.pbtxt", "triton/s3-model/1/model.py",
                    "triton/s3-model/1/hf/model.safetensors"} <= set(store.list("triton/"))
            prompt = await state.render_chat("s3-model", [{"role": "user",
                                                           "content": QA[1][0]}])
            text, finish, _, n_out = await generate(state, "s3-model", prompt,
                                                    {"max_tokens": 24})
            assert (text, finish) == (QA[1][1], "stop") and n_out > 0
        finally:
            await state.close()
            await rt.close()


# --- the API's tokenizers -------------------------------------------------------------------


async def test_concurrent_first_requests_share_one_tokenizer_download(settings, tmp_path,
                                                                      trained):
    """Many first requests for a model at once: one download of its small files (no
    request sees a half-written folder), one tokenizer, and its context length."""
    import asyncio

    from syllabus.contracts import ModelDeployed
    from syllabus.services.runtime import Runtime
    from syllabus.services.server import server_state

    settings.server.work_dir = tmp_path / "server"
    rt = Runtime.create(settings)
    prefix = upload_model(rt.store, "tok-model", trained)
    state = server_state(rt)
    state.records["tok-model"] = {"event": ModelDeployed(model_id="tok-model", name="tok-model",
                                                         endpoint="http://x/v1"),
                                  "store_prefix": prefix}
    try:
        toks = await asyncio.gather(*(state.tokenizer("tok-model") for _ in range(6)),
                                    *(state.context_length("tok-model") for _ in range(6)))
    finally:
        await rt.close()
    assert len({id(t) for t in toks[:6]}) == 1 and set(toks[6:]) == {4096}
    staged = state.staging("tok-model")
    assert (staged / "tokenizer.json").is_file() and not (staged / "model.safetensors").exists()
    assert sorted(p.name for p in staged.parent.iterdir()) == ["hf"]  # no leftovers


async def test_a_model_is_asked_as_its_data_set_was_written(settings, tmp_path, trained):
    """Li et al. §2.3: a model trained on S_a/S_w-tagged data is asked with S_a; Hsieh et
    al.: a model trained on predict:/explain: rows is asked with predict:. The server
    reads both from the model's dataset_manifest.json; a chat that brings its own system
    turn keeps it, and an untagged model gets neither."""
    from syllabus.contracts import HUMPBACK_SEED_SYSTEM, ModelDeployed
    from syllabus.services.runtime import Runtime
    from syllabus.services.server import server_state

    settings.server.work_dir = tmp_path / "server"
    rt = Runtime.create(settings)
    manifest = json.dumps({"humpback_tags": {"inference_system": HUMPBACK_SEED_SYSTEM}})
    state = server_state(rt)
    step = json.dumps({"format": "step-by-step"})
    for name, extra in (("tagged", {"dataset_manifest.json": manifest.encode()}),
                        ("plain", {"dataset_manifest.json": b'{"version": "x"}'}),
                        ("step", {"dataset_manifest.json": step.encode()})):
        prefix = upload_model(rt.store, name, trained)
        for file, data in extra.items():
            rt.store.put(prefix + file, data)
        state.records[name] = {"event": ModelDeployed(model_id=name, name=name,
                                                      endpoint="http://x/v1"),
                               "store_prefix": prefix}
    user = [{"role": "user", "content": "How many eggs does a queen lay?"}]
    try:
        tagged = await state.render_chat("tagged", user)
        own = await state.render_chat("tagged", [{"role": "system", "content": "Be brief."},
                                                 *user])
        plain = await state.render_chat("plain", user)
        # distilling step-by-step: its model is asked with the predict: task prefix
        stepped = await state.render_chat("step", user)
        explained = await state.render_chat("step", [{"role": "user",
                                                      "content": "explain: Why?"}])
    finally:
        await rt.close()
    assert HUMPBACK_SEED_SYSTEM in tagged and "How many eggs" in tagged
    assert "Be brief." in own and HUMPBACK_SEED_SYSTEM not in own
    assert HUMPBACK_SEED_SYSTEM not in plain and "predict:" not in plain
    assert "predict: How many eggs" in stepped
    assert "explain: Why?" in explained and "predict:" not in explained


# --- syllabus run --serve ----------------------------------------------------------------


async def test_run_serve_step_reports_scores_and_an_answer(settings, tmp_path, trained):
    """The part of `syllabus run --serve` after training: the server router mounted with
    the run's, the model deployed from its training.completed, then serve_step asks it a
    held-out question through the OpenAI endpoint and fills the report."""
    from rich.console import Console

    from syllabus.services.cli._report import RunReport
    from syllabus.services.cli._run import wait_drained
    from syllabus.services.cli._run_serve import prepare_settings, serve_step
    from syllabus.services.runtime import Runtime
    from syllabus.services.server import build_router

    settings.server.eval_qa_limit = 2
    settings.server.eval_sycophancy_limit = 1
    settings.server.eval_max_tokens = 24
    settings.server.torch_threads = 1
    prepare_settings(settings, tmp_path / "out")
    assert settings.server.work_dir == tmp_path / "out" / "server"
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    report = RunReport(run_id="r1", collection="bees", out_dir=str(tmp_path / "out"))
    try:
        upload_eval(rt.store, "bees/v1", QA)
        prefix = upload_model(rt.store, "run-model", trained)
        await rt.bus.publish(TrainingCompleted(job_id="run-job", model_id="run-model",
                                               store_prefix=prefix, dataset="bees/v1"))
        await wait_drained(rt, timeout=240)
        await serve_step(rt, report, dataset="bees/v1")
    finally:
        await rt.close()
    serving = report.serving
    assert serving["status"] == "deployed" and serving["eval_scores"]["qa.exact_match"] == 1.0
    assert serving["question"] == QA[0][0] and serving["answer"] == QA[0][1]
    assert serving["endpoint"].startswith("http://127.0.0.1:")
    assert "server" not in rt.state or rt.state["server"].triton is None  # Triton stopped
    console = Console(record=True, width=120)
    report.render(console)
    text = console.export_text()
    assert "serving: run-model (deployed)" in text and f'"{QA[0][1]}"' in text
    assert "qa.exact_match" in text


# --- the CLI ------------------------------------------------------------------------------


def _cli(pod, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    full.update({"SYLLABUS_NATS__URL": pod.nats.url, "SYLLABUS_STORE__KIND": "local",
                 "SYLLABUS_STORE__PATH": str(pod.store.root), **env})
    return subprocess.run([str(Path(sys.executable).parent / "syllabus"), *args], env=full,
                          capture_output=True, text=True, timeout=300)


def test_cli_models_deploy_and_eval_qa(server_pod, good):
    out = _cli(server_pod, "models", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows[triton_name(GOOD)]["status"] == "deployed"
    assert rows[triton_name(GOOD)]["eval_scores"]["qa.exact_match"] == 1.0

    # a model handled before is not deployed again without --force
    out = _cli(server_pod, "deploy", GOOD)
    assert out.returncode == 0 and "use --force" in out.stderr
    assert out.stdout.startswith("deployed: ")

    # the held-out QA suite through the OpenAI API, with the bearer token
    out = _cli(server_pod, "eval", "qa", "bees/v1", "--teacher-kind", "openai",
               "--url", server_pod.api, "--model", GOOD, "--max-tokens", "24", "--json",
               "--no-cache", SYLLABUS_TEACHER__API_KEY=server_pod.token)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["items"] == 3 and result["exact_match"] == 1.0 and result["errors"] == 0


def test_cli_deploy_force_goes_through_the_running_server(server_pod, good, trained):
    # a second model id, deployed by hand; --force makes the server redo it
    prefix = upload_model(server_pod.store, "bees-tiny-by-hand", trained)
    out = _cli(server_pod, "deploy", "bees-tiny-by-hand", "--dataset", "bees/v1",
               "--store-prefix", prefix, "--force")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("deployed: bees-tiny-by-hand")
    assert "qa.exact_match 1.000" in out.stdout
    served = {m.id for m in _client(server_pod).models.list().data}
    assert "bees-tiny-by-hand" in served

    # a --force redeploy that fails leaves the version being served in place
    broken = upload_model(server_pod.store, "bees-tiny-broken", trained,
                          replace={"model.safetensors": b"not a safetensors file"})
    out = _cli(server_pod, "deploy", "bees-tiny-by-hand", "--dataset", "bees/v1",
               "--store-prefix", broken, "--force")
    assert out.stdout.startswith("failed: bees-tiny-by-hand"), out.stdout + out.stderr
    reply = _client(server_pod).chat.completions.create(
        model="bees-tiny-by-hand", messages=[{"role": "user", "content": QA[1][0]}],
        max_tokens=24, temperature=0)
    assert reply.choices[0].message.content == QA[1][1]
    record = json.loads(server_pod.store.get("triton/bees-tiny-by-hand/deployment.json"))
    assert record["event"]["status"] == "deployed" and record["event"]["version"] == 1
    assert record["last_version"] == 2  # the next try is version 3 (a new announcement id)
    config = server_pod.work_dir / "repository" / "bees-tiny-by-hand"
    assert "versions: [ 1 ]" in (config / "config.pbtxt").read_text()
    assert sorted(p.name for p in config.iterdir() if p.is_dir()) == ["1"]


def test_eval_gate_compares_with_the_base_model(server_pod, good, trained, tmp_path):
    """The base model a candidate's training.json names is served, asked the held-out set
    through the candidate's chat template, and unloaded; its score is cached. A model
    worse than its base is refused, a better one deployed."""
    from syllabus.services.runtime._tiny_model import init_tiny_model

    store = server_pod.store
    random_dir = init_tiny_model(tmp_path / "random")  # the untrained start
    for f in sorted(random_dir.iterdir()):
        store.put(f"base-models/tiny-random/{f.name}", f.read_bytes())

    def publish(model_id: str, folder: Path, base: str) -> ModelDeployed:
        prefix = upload_model(store, model_id, folder)
        store.put(prefix + "training.json", json.dumps({"base_model": base}).encode())
        server_pod.publish(TrainingCompleted(job_id=f"job-{model_id}", model_id=model_id,
                                             store_prefix=prefix, dataset="bees/v1"))
        return server_pod.wait_deployed(model_id)

    better = publish("bees-tiny-vs-base", trained, "base-models/tiny-random")
    assert better.status == "deployed", better.reason
    base = better.eval_details["base"]
    assert base["model"] == "base-models/tiny-random/" and "cached" not in base
    assert base["scores"]["qa.token_f1"] < better.eval_scores["qa.token_f1"] == 1.0
    assert base["details"]["qa"]["items"] == 3
    assert len(list(store.list("server/base-scores/"))) == 1
    listed = {m.id for m in _client(server_pod).models.list().data}
    assert triton_name("bees-tiny-vs-base") in listed
    assert not any(m.startswith("base-") for m in listed)  # unloaded after the comparison
    assert not (server_pod.work_dir / "models" / triton_name(
        "base-base-models/tiny-random")).exists()

    # the random model, "fine-tuned" from the good one: worse than its base
    worse = publish("bees-tiny-worse-than-base", random_dir, f"models/{GOOD}/")
    assert worse.status == "refused"
    assert worse.eval_details["base"]["scores"]["qa.token_f1"] == 1.0
    assert (f"qa.token_f1 = {worse.eval_scores['qa.token_f1']:.3f} is below the base "
            f"model's 1.000 (models/{GOOD}/)") in worse.reason
    assert triton_name("bees-tiny-worse-than-base") not in {
        m.id for m in _client(server_pod).models.list().data}

    # a base outside the store is named, and compares nothing
    other = publish("bees-tiny-local-base", trained, "/somewhere/on/the/trainer")
    assert other.status == "deployed", other.reason
    assert "is not in the store" in other.eval_details["base"]["skipped"]


def test_restart_loads_the_deployed_models_again(server_pod, good):
    """A new server process (same store, same NATS) loads every model whose record says
    deployed, without deploying or announcing it again; refused and failed ones stay out."""
    records = [json.loads(server_pod.store.get(k)) for k in server_pod.store.list("triton/")
               if k.endswith("/deployment.json")]
    deployed = {r["event"]["name"] for r in records if r["event"]["status"] == "deployed"}
    assert triton_name(GOOD) in deployed
    server_pod.restart()
    client = _client(server_pod)
    assert {m.id for m in client.models.list().data} == deployed
    reply = client.chat.completions.create(
        model=GOOD, messages=[{"role": "user", "content": QA[2][0]}], max_tokens=24,
        temperature=0)
    assert reply.choices[0].message.content == QA[2][1]
    assert len(server_pod.deployed_events(GOOD)) == 1
    assert server_pod.metric("syllabus_server_models") == len(deployed)


# --- units -------------------------------------------------------------------------------


def test_repository_files_and_config():
    files = repository_files("m", ["config.json", "model.safetensors", "tokenizer.json",
                                   "tokenizer_config.json", "adapter/adapter_model.safetensors",
                                   "trainer_state.json"])
    assert set(files.generated) == {"config.pbtxt", "1/model.py"}
    assert set(files.weights) == {"1/hf/config.json", "1/hf/model.safetensors",
                                  "1/hf/tokenizer.json", "1/hf/tokenizer_config.json"}
    with pytest.raises(ValueError, match="no weights"):
        repository_files("m", ["config.json", "tokenizer.json"])
    vllm = repository_files("m", ["config.json", "model.safetensors", "tokenizer.json"],
                            backend="vllm", vllm_model_path="/models/m/1/hf")
    assert json.loads(vllm.generated["1/model.json"])["model"] == "/models/m/1/hf"
    assert 'backend: "vllm"' in config_pbtxt("m", backend="vllm")
    assert "version_policy" not in config_pbtxt("m")
    assert "versions: [ 3 ]" in config_pbtxt("m", version=3)
    # newer vLLM refuses disable_log_requests
    assert "disable_log_requests" not in vllm.generated["1/model.json"].decode()


def test_triton_names_never_collide():
    assert triton_name("bees-tiny.v2_1") == "bees-tiny.v2_1"  # a valid name stays as it is
    changed = triton_name("org/My Model:1")
    assert changed.startswith("org-My-Model-1-") and len(changed) == len("org-My-Model-1") + 9
    assert triton_name("org/m") != triton_name("org-m") == "org-m"
    long_a, long_b = triton_name("a" * 200), triton_name("a" * 201)
    assert len(long_a) == 128 and long_a != long_b
    with pytest.raises(ValueError, match="no usable characters"):
        triton_name("///")


def test_tritonserver_dies_with_its_parent(tmp_path):
    """A SIGKILLed server leaves no tritonserver behind (PR_SET_PDEATHSIG)."""
    script = (
        "import sys, time\n"
        "from syllabus.services.server import EmbeddedTriton\n"
        f"t = EmbeddedTriton({str(tmp_path / 'repo')!r}, work_dir={str(tmp_path / 'w')!r})\n"
        "t.start()\n"
        "print(t.process.pid, flush=True)\n"
        "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        os.kill(pid, 0)  # running
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{pid}/stat") as fh:  # a zombie awaiting its reaper is gone too
                if fh.read().split(")")[-1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("tritonserver outlived its parent")
