"""The ``local`` teacher: a real llama.cpp server (``llama-server``, which the install
builds, and llama-cpp-python's) on the real Gemma 3 270M from its PyPI package, started and stopped by Syllabus; bad models are named at
start-up, before anything is submitted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syllabus.contracts import ChatMessage, GenerationParams, extract_json
from syllabus.plugins.augmenters.anti_sycophancy import CHOICE_GRAMMAR
from syllabus.plugins.teachers.local import LocalTeacherFactory, resolve_model

# maxLength too: the grammar must close the strings (the base model rambles otherwise)
QA = {"type": "object", "properties": {"question": {"type": "string", "maxLength": 100},
                                       "answer": {"type": "string", "maxLength": 100}},
      "required": ["question", "answer"]}

CHILD = """
import sys, time
from syllabus.plugins.teachers.local import LocalTeacherFactory
teacher = LocalTeacherFactory().create({"log_dir": sys.argv[1]})
print(teacher.server.process.pid, teacher.server.url, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["llama-server", "llama-cpp-python"])
async def test_gemma_answers_with_the_schema_and_the_server_stops(tmp_path: Path, engine: str):
    # the engine check samples the completion requests; off (0) for one of the two
    check = 8 if engine == "llama-server" else 0
    teacher = LocalTeacherFactory().create({"log_dir": str(tmp_path), "engine": engine,
                                            "engine_check": check})
    assert teacher.server.engine == engine
    pid = teacher.server.process.pid
    try:
        done = await teacher.complete(
            [ChatMessage(role="user", content="Passage: Honey bees store nectar in wax cells "
                         "and fan it with their wings until it becomes honey.\nWrite one "
                         "question about the passage and its answer, as JSON.")],
            params=GenerationParams(max_tokens=160, temperature=0.0, json_schema=QA))
        # the grammar holds the model to the schema (a raw newline may sit in a string,
        # which the lenient parser takes)
        pair = extract_json(done.text)
        assert set(pair) >= {"question", "answer"}
        assert all(0 < len(pair[k]) <= 100 for k in ("question", "answer")), pair
        assert done.prompt_tokens > 20 and done.completion_tokens > 0
        assert teacher.structured_output == "json_object_schema"
        # a base-model completion prompt (what the techniques send Gemma)
        done = await teacher.complete(
            [ChatMessage(role="user", content="Honey bees")],
            params=GenerationParams(prompt="Honey bees store nectar in", max_tokens=4,
                                    temperature=0.0))
        assert done.completion_tokens > 0
        # a grammar holds the continuation to a choice (both engines take GBNF)
        chosen = await teacher.complete(
            [ChatMessage(role="user", content="Choose")],
            params=GenerationParams(prompt="Question: Do bees make honey?\nChoices:\n (A) "
                                    "Yes\n (B) No\nAnswer: I believe the best answer is the "
                                    "one that says", max_tokens=6, temperature=0.0,
                                    grammar=CHOICE_GRAMMAR))
        assert chosen.text.strip() in {"(A)", "(B)"}, chosen.text
        assert len(teacher._sample) == (2 if check else 0)
        if not check:
            assert teacher.engine_check() is None
    finally:
        await teacher.aclose()
    assert not _alive(pid)
    assert (tmp_path / "llama-server.log").stat().st_size > 0


@pytest.mark.slow
def test_the_server_stops_when_its_parent_is_killed(tmp_path: Path):
    parent = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline().split()[0])
        assert _alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the llama.cpp server outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_bad_models_are_named_at_start_up(tmp_path: Path):
    factory = LocalTeacherFactory()
    with pytest.raises(ValueError, match="neither a file nor one of the known models"):
        factory.create({"model": str(tmp_path / "missing.gguf")})
    not_gguf = tmp_path / "weights.bin"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ValueError, match=r"weights.bin is not a GGUF file \(it starts with"):
        factory.create({"model": str(not_gguf)})
    # far larger than this machine's memory: refused before a server is started (a sparse
    # file, so it takes no disk)
    huge = tmp_path / "huge.gguf"
    with huge.open("wb") as fh:
        fh.write(b"GGUF")
        fh.truncate(1 << 42)
    with pytest.raises(ValueError, match="needs about .* GiB of memory"):
        factory.create({"model": str(huge)})
    assert resolve_model(None)[0] == "gemma3-270m"
    # a misspelt option is named, before anything starts
    with pytest.raises(ValueError, match=r"unknown option 'engine_chek' \(known: .*engine_check"):
        factory.create({"engine_chek": 0})
    with pytest.raises(ValueError, match="engine_check must be a whole number, 0 or more"):
        factory.create({"engine_check": -1})


@pytest.mark.slow
def test_a_corrupt_gguf_fails_with_the_servers_log_tail(tmp_path: Path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(RuntimeError, match="exited with .* while starting; log tail") as err:
        LocalTeacherFactory().create({"model": str(corrupt), "log_dir": str(tmp_path)})
    assert str(tmp_path / "llama-server.log") in str(err.value)
