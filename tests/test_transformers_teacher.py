"""The ``transformers`` teacher on a real (tiny, random) Llama made by ``init_tiny_model``:
prompt building, generation limits, determinism, stop strings, cancellation, the errors
for directories that are not models, lazy imports, and plugin loading."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from syllabus.contracts import (
    ChatMessage,
    GenerationParams,
    Teacher,
    TeacherError,
    TeacherFactory,
)
from syllabus.plugins.teachers.transformers import TransformersTeacher, TransformersTeacherFactory
from syllabus.services.runtime._tiny_model import SPECIAL_TOKENS, init_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers loads: nothing may reach a hub

HELLO = [ChatMessage(role="system", content="Be brief."),
         ChatMessage(role="user", content="Say hello in three words")]
CHAT = [{"role": m.role, "content": m.content} for m in HELLO]

MakeTeacher = Callable[..., TransformersTeacher]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)


@pytest.fixture
async def make_teacher(tiny_model: Path) -> AsyncIterator[MakeTeacher]:
    made: list[TransformersTeacher] = []

    def make(**options: Any) -> TransformersTeacher:
        teacher = TransformersTeacherFactory().create({"model": str(tiny_model), **options})
        made.append(teacher)
        return teacher

    yield make
    for teacher in made:
        await teacher.aclose()


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir())}


# --- the tiny model --------------------------------------------------------------------


def test_tiny_model_is_deterministic_and_loads_offline(tiny_model: Path, tmp_path: Path,
                                                       tokenizer: Any) -> None:
    again = init_tiny_model(tmp_path / "again")
    digests = _digests(tiny_model)
    assert {"config.json", "model.safetensors", "tokenizer.json",
            "generation_config.json"} <= set(digests)
    assert _digests(again) == digests
    other = init_tiny_model(tmp_path / "other", seed=1)
    assert _digests(other)["model.safetensors"] != digests["model.safetensors"]
    assert _digests(other)["tokenizer.json"] == digests["tokenizer.json"]

    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, local_files_only=True)
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.vocab_size == len(tokenizer) <= 512
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    for token in SPECIAL_TOKENS:
        assert token in tokenizer.all_special_tokens
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer.decode(tokenizer("The queen lays eggs.")["input_ids"]) == \
        "The queen lays eggs."


def test_tiny_chat_template_marks_the_answer_tokens(tokenizer: Any) -> None:
    chat = [*CHAT, {"role": "assistant", "content": "Hello there, friend"}]
    encoded = tokenizer.apply_chat_template(chat, return_dict=True,
                                            return_assistant_tokens_mask=True)
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    answer = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(answer) == "Hello there, friend<|im_end|>"
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert prompt == ("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                      "Say hello in three words<|im_end|>\n<|im_start|>assistant\n")


def test_tiny_model_rejects_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        init_tiny_model(tmp_path / "a", vocab_size=100)
    with pytest.raises(ValueError, match="multiple of heads"):
        init_tiny_model(tmp_path / "b", hidden_size=30, heads=4)
    with pytest.raises(ValueError, match="no text"):
        init_tiny_model(tmp_path / "c", corpus=["", "  "])


# --- generation ------------------------------------------------------------------------


async def test_generates_at_most_max_tokens(make_teacher: MakeTeacher, tiny_model: Path,
                                            tokenizer: Any) -> None:
    teacher = make_teacher()
    assert isinstance(teacher, Teacher)
    assert not teacher.loaded  # loading waits for the first call
    result = await teacher.complete(HELLO, params=GenerationParams(max_tokens=12))
    assert teacher.loaded and "device='cpu'" in repr(teacher)
    assert result.text
    assert 0 < result.completion_tokens <= 12
    assert len(tokenizer(result.text, add_special_tokens=False)["input_ids"]) <= 12
    assert result.model == str(tiny_model) and result.latency_seconds > 0


async def test_greedy_is_deterministic(make_teacher: MakeTeacher) -> None:
    params = GenerationParams(max_tokens=20, temperature=0.0)
    teacher = make_teacher()
    first = await teacher.complete(HELLO, params=params)
    second = await teacher.complete(HELLO, params=params)
    fresh = await make_teacher().complete(HELLO, params=params)
    assert (first.text, first.completion_tokens) == (second.text, second.completion_tokens)
    assert fresh.text == first.text


async def test_prompt_is_the_chat_template(make_teacher: MakeTeacher, tokenizer: Any) -> None:
    result = await make_teacher().complete(HELLO, params=GenerationParams(max_tokens=2))
    templated = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True,
                                              return_dict=False)
    plain = tokenizer("system: Be brief.\nuser: Say hello in three words\nassistant:")
    assert result.prompt_tokens == len(templated)
    assert result.prompt_tokens != len(plain["input_ids"])


async def test_without_a_template_the_prompt_is_role_lines(tiny_model: Path, tmp_path: Path,
                                                           tokenizer: Any) -> None:
    bare = Path(shutil.copytree(tiny_model, tmp_path / "bare"))
    (bare / "chat_template.jinja").unlink()
    teacher = TransformersTeacherFactory().create({"model": str(bare)})
    try:
        result = await teacher.complete(HELLO, params=GenerationParams(max_tokens=2))
    finally:
        await teacher.aclose()
    plain = tokenizer("system: Be brief.\nuser: Say hello in three words\nassistant:")
    assert result.prompt_tokens == len(plain["input_ids"])


async def test_template_without_system_role_gets_it_folded_in(tiny_model: Path,
                                                              tmp_path: Path,
                                                              tokenizer: Any) -> None:
    strict = Path(shutil.copytree(tiny_model, tmp_path / "strict"))
    template = (strict / "chat_template.jinja").read_text()
    (strict / "chat_template.jinja").write_text(
        "{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}" + template)
    teacher = TransformersTeacherFactory().create({"model": str(strict)})
    try:
        result = await teacher.complete(HELLO, params=GenerationParams(max_tokens=2))
    finally:
        await teacher.aclose()
    folded = [{"role": "user", "content": "Be brief.\n\nSay hello in three words"}]
    assert result.prompt_tokens == len(tokenizer.apply_chat_template(
        folded, add_generation_prompt=True, return_dict=False))


async def test_stop_strings_truncate_and_end_generation(make_teacher: MakeTeacher) -> None:
    teacher = make_teacher(seed=7)
    sampled = GenerationParams(max_tokens=48, temperature=1.0)
    full = await teacher.complete(HELLO, params=sampled)
    assert (await teacher.complete(HELLO, params=sampled)).text == full.text  # seeded
    # a two-letter stop string from the second half of the reply
    start = next(i for i in range(len(full.text) // 2, len(full.text) - 1)
                 if full.text[i:i + 2].isascii() and full.text[i:i + 2].isalpha())
    stop = full.text[start:start + 2]
    cut = await teacher.complete(HELLO, params=sampled.model_copy(update={"stop": [stop]}))
    assert cut.text == full.text[:full.text.index(stop)]
    assert stop not in cut.text
    assert cut.completion_tokens < full.completion_tokens  # it stopped generating, too


async def test_concurrent_calls_take_turns(make_teacher: MakeTeacher) -> None:
    teacher = make_teacher()
    params = GenerationParams(max_tokens=16)
    results = await asyncio.gather(*(teacher.complete(HELLO, params=params) for _ in range(3)))
    assert len({(r.text, r.completion_tokens) for r in results}) == 1


async def test_cancelled_call_stops_generating(make_teacher: MakeTeacher) -> None:
    teacher = make_teacher()
    await teacher.load()
    # uncancelled, 20,000 tokens take minutes on a CPU
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(teacher.complete(HELLO, params=GenerationParams(
            max_tokens=20_000)), timeout=0.5)
    started = time.perf_counter()
    result = await teacher.complete(HELLO, params=GenerationParams(max_tokens=4))
    assert time.perf_counter() - started < 10
    assert 0 < result.completion_tokens <= 4


async def test_max_tokens_below_one_fails(make_teacher: MakeTeacher) -> None:
    with pytest.raises(TeacherError, match="max_tokens") as info:
        await make_teacher().complete(HELLO, params=GenerationParams(max_tokens=0))
    assert info.value.retryable is False


# --- configuration and errors ----------------------------------------------------------


def test_hub_id_is_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="never downloaded") as info:
        TransformersTeacherFactory().create({"model": "meta-llama/Llama-3-8B"})
    assert "'meta-llama/Llama-3-8B'" in str(info.value)


def test_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(ValueError, match="does not exist") as info:
        TransformersTeacherFactory().create({"model": str(missing)})
    assert str(missing) in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json") as info:
        TransformersTeacherFactory().create({"model": str(empty)})
    assert str(empty) in str(info.value)


async def test_directory_without_weights_fails_at_first_call(tiny_model: Path,
                                                             tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tiny_model / "config.json", broken / "config.json")
    teacher = TransformersTeacherFactory().create({"model": str(broken)})
    for _ in range(2):  # the second call fails the same way, without loading again
        with pytest.raises(TeacherError) as info:
            await teacher.complete(HELLO, params=GenerationParams(max_tokens=2))
        assert info.value.retryable is False
        assert str(broken) in str(info.value)
    assert not teacher.loaded
    await teacher.aclose()


def test_options_are_checked(tiny_model: Path) -> None:
    factory = TransformersTeacherFactory()
    for options in ({}, {"model": "  "}):
        with pytest.raises(ValueError, match="'model' is required"):
            factory.create(options)
    with pytest.raises(ValueError, match="dtype must be one of"):
        factory.create({"model": str(tiny_model), "dtype": "int3"})
    with pytest.raises(ValueError, match="device must be"):
        factory.create({"model": str(tiny_model), "device": "the gpu"})
    with pytest.raises(ValueError, match="seed must be"):
        factory.create({"model": str(tiny_model), "seed": "x"})
    teacher = factory.create({"model": str(tiny_model), "dtype": "BF16", "device": "CPU",
                              "name": "tiny", "seed": "3", "timeout": 5, "url": None})
    assert (teacher.model, teacher.dtype, teacher.device, teacher.seed) == \
        ("tiny", "bfloat16", "cpu", 3)
    assert repr(teacher) == ("TransformersTeacher(model='tiny', device='cpu', "
                             "dtype='bfloat16', loaded=False)")
    assert isinstance(factory, TeacherFactory) and isinstance(teacher, Teacher)


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = ("import sys, syllabus.plugins.teachers.transformers; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["False", "False"]


# --- plugin loading --------------------------------------------------------------------


async def test_loaded_through_its_entry_point(tiny_model: Path) -> None:
    module = entry_points(group="syllabus")["transformers-teacher"].load()
    registered: list[Any] = []
    module.register_teachers(register=registered.append)
    [factory] = registered
    assert isinstance(factory, TeacherFactory) and factory.kind == "transformers"
    teacher = factory.create({"model": str(tiny_model)})
    try:
        assert isinstance(teacher, Teacher)
        assert (teacher.kind, teacher.model) == ("transformers", str(tiny_model))
        assert (await teacher.complete(HELLO, params=GenerationParams(max_tokens=3))).text
    finally:
        await teacher.aclose()


async def test_the_runtime_makes_and_wraps_it(tiny_model: Path) -> None:
    from syllabus.services.runtime import PluginManager, TeacherSettings, make_teacher

    plugins = PluginManager(allow={"transformers-teacher"})
    assert plugins.errors == {}
    managed = make_teacher(TeacherSettings(kind="transformers", model=str(tiny_model)),
                           plugins, store=None)
    try:
        result = await managed.complete(HELLO, params=GenerationParams(max_tokens=3))
    finally:
        await managed.aclose()
    assert result.completion_tokens == 3 and managed.stats.calls == 1
    assert (managed.kind, managed.model) == ("transformers", str(tiny_model))
