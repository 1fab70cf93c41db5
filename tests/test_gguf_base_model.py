"""The GGUF-to-transformers base model: Gemma 3 270M from its package, converted the way
``syllabus train --base-model gemma3-270m`` converts it, agrees with llama.cpp (the engine
the ``local`` teacher runs) on the next token over a passage; and the conversion is cached
in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PASSAGE = (
    "A honey bee colony has three castes. The queen lays the eggs, the workers are sterile "
    "females that do every other task in the hive, and the drones are males whose only role "
    "is to mate. In summer a worker lives about six weeks: she cleans cells, feeds larvae, "
    "builds comb, guards the entrance and, in the last part of her life, forages for nectar "
    "and pollen. Winter bees live for several months and keep the cluster warm.")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    from syllabus.plugins.teachers.local import resolve_model
    from syllabus.services.cli._base_model import convert_gguf

    _, path = resolve_model("gemma3-270m")
    return convert_gguf(path, tmp_path_factory.mktemp("gemma") / "gemma3-270m")


@pytest.mark.slow
def test_the_converted_model_agrees_with_llama_cpp_on_the_next_token(converted: Path):
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syllabus.plugins.teachers.local import resolve_model

    _, gguf = resolve_model("gemma3-270m")
    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    ids = llm.tokenize(PASSAGE.encode(), add_bos=True)
    llm.eval(ids)
    cpp_top = np.asarray(llm.scores[:len(ids)]).argmax(axis=-1)
    llm.close()

    tokenizer = AutoTokenizer.from_pretrained(converted)
    # both tokenizers read the same GGUF vocabulary: the same ids for the passage
    assert tokenizer(PASSAGE).input_ids == ids
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
    with torch.no_grad():
        hf_top = model(torch.tensor([ids])).logits[0].argmax(dim=-1).numpy()
    agreement = float((hf_top == cpp_top).mean())
    assert len(ids) > 80
    assert agreement >= 0.9, f"top-1 agreement {agreement:.2%} over {len(ids)} positions"


@pytest.mark.slow
def test_the_conversion_is_cached_in_the_store(tmp_path: Path, converted: Path, monkeypatch):
    from syllabus.services.cli import _base_model
    from syllabus.services.runtime._store import LocalStore

    store = LocalStore(tmp_path / "store")
    calls: list[Path] = []

    def convert(path: Path, folder: Path) -> Path:  # the real files, converted once above
        calls.append(path)
        folder.mkdir(parents=True)
        for f in converted.iterdir():
            (folder / f.name).symlink_to(f)
        return folder

    monkeypatch.setattr(_base_model, "convert_gguf", convert)
    first = _base_model.gguf_base_model(store, "gemma3-270m")
    second = _base_model.gguf_base_model(store, "gemma3-270m")
    assert first == second and first.startswith("base-models/gemma3-270m-")
    assert len(calls) == 1
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        k.rsplit("/", 1)[1] for k in store.list(first)}
    with pytest.raises(ValueError, match="not a GGUF file"):
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"PK\x03\x04 not a gguf")
        _base_model.gguf_base_model(store, str(bad))


@pytest.mark.slow
def test_m0_written_as_gguf_agrees_with_the_model_it_was_written_from(tmp_path: Path,
                                                                       converted: Path):
    """``--teacher bootstrap`` serves M0 through llama.cpp after writing it as a GGUF file:
    the file llama.cpp's converter writes (Q8_0) gives the same top-1 next token as the
    transformers model folder it came from, at 90 % of the passage's positions or more."""
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syllabus.services.cli._bootstrap import export_gguf

    gguf = export_gguf(converted, tmp_path / "m0.gguf")
    assert gguf.read_bytes()[:4] == b"GGUF" and not list(tmp_path.glob("*.part"))
    tokenizer = AutoTokenizer.from_pretrained(converted)
    ids = tokenizer(PASSAGE).input_ids
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
    with torch.no_grad():
        hf_top = model(torch.tensor([ids])).logits[0].argmax(dim=-1).numpy()
    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    assert llm.tokenize(PASSAGE.encode(), add_bos=True) == ids
    llm.eval(ids)
    cpp_top = np.asarray(llm.scores[:len(ids)]).argmax(axis=-1)
    llm.close()
    agreement = float((hf_top == cpp_top).mean())
    assert agreement >= 0.9, f"top-1 agreement {agreement:.2%} over {len(ids)} positions"


def tiny_gemma(converted: Path, folder: Path) -> Path:
    """A random Gemma 3 with two narrow layers and Gemma's own tokenizer: the architecture
    and vocabulary llama.cpp's converter knows, small enough to train in seconds."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(converted)
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = 64, 128, 2
    cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim = 2, 1, 32
    cfg.query_pre_attn_scalar = 32
    cfg.layer_types = ["sliding_attention", "full_attention"]
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    for f in converted.iterdir():
        if f.name.startswith("tokenizer") or f.name == "generation_config.json":
            shutil.copy(f, folder / f.name)
    return folder


@pytest.mark.slow
def test_run_teacher_bootstrap_trains_m0_and_runs_the_pipeline_with_it(tmp_path: Path,
                                                                        converted: Path):
    """``syllabus run --teacher bootstrap``: the seed run (extractive) builds a data set, the
    trainer fine-tunes ``--base-model`` on it (M0), the converter writes M0 as GGUF, and the
    pipeline runs again with the local teacher serving that file; the report says so, and a
    second run on the same --out converts nothing again."""
    from click.testing import CliRunner

    from syllabus.services.cli import main

    base = tiny_gemma(converted, tmp_path / "tiny-gemma")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "swarming.md").write_text(
        (Path(__file__).parent.parent / "examples" / "bees" / "swarming.md").read_text())
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(docs), "--out", str(out), "--teacher",
                                       "bootstrap", "--base-model", str(base), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    boot = report["bootstrap"]
    seed = json.loads((out / "bootstrap" / "seed" / "report.json").read_text())
    assert seed["teacher"].startswith("extractive") and boot["seed"]["rows"] > 0
    assert boot["seed"]["rows"] == seed["dataset"]["train_rows"] + seed["dataset"]["eval_rows"]
    m0 = boot["m0"]
    assert m0["outcome"] == "completed" and m0["method"] == "lora"
    assert m0["base_model"].startswith("base-models/tiny-gemma-")
    gguf = Path(m0["gguf"])
    assert gguf.read_bytes()[:4] == b"GGUF" and gguf.parent == out / "bootstrap"
    # the second run's teacher is M0, served by llama.cpp, and it was asked
    assert report["teacher"] == f"local ({gguf.stem})"
    assert report["teacher_stats"]["calls"] > 0
    assert (out / "llama-server.log").is_file() or (out / "llama-cpp-python.log").is_file()
    # what M0 made is counted, each technique with its outputs (a random M0 writes little
    # that parses: its zeros are named, never silent)
    assert report["techniques"], report
    if boot["m0_rows"] == 0:
        assert any("bootstrap: M0 as the teacher made no data set rows" in w
                   for w in report["warnings"])
    assert m0["gguf_reused"] is False and m0["teacher_options"]["base_model"] is True
    # a second run on the same --out: the seed data set is the same, so the trainer answers
    # M0's job id (derived from it) with the model it made, and its GGUF file is reused
    mtime = gguf.stat().st_mtime_ns
    again = CliRunner().invoke(main, ["run", str(docs), "--out", str(out), "--teacher",
                                      "bootstrap", "--base-model", str(base), "--json"])
    assert again.exit_code == 0, again.output
    second = json.loads((out / "report.json").read_text())
    assert second["bootstrap"]["m0"]["model_id"] == m0["model_id"]
    assert second["bootstrap"]["m0"]["gguf_reused"] is True
    assert gguf.stat().st_mtime_ns == mtime
    # its documents were processed by the first run: nothing is asked again, and it says so
    assert any("bootstrap: M0 was asked nothing" in w for w in second["warnings"]), second


def test_run_teacher_bootstrap_choices_are_checked_before_the_pipeline(tmp_path: Path,
                                                                        monkeypatch):
    """``--teacher bootstrap`` makes its own teacher: ``--teacher-model`` is a usage error;
    a converter that is not there, or a folder that is no model, is named."""
    from click.testing import CliRunner

    from syllabus.services.cli import main
    from syllabus.services.cli._bootstrap import converter_script, export_gguf

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nBees make honey.\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(docs), "--out", str(out), "--teacher",
                                       "bootstrap", "--teacher-model", "gemma3-270m"])
    assert result.exit_code == 2 and "leave out --teacher-model" in result.output
    result = CliRunner().invoke(main, ["run", str(docs), "--out", str(out), "--teacher",
                                       "bootstrap", "--base-model", "tiny"])
    assert result.exit_code == 2 and "cannot read the tiny random model" in result.output
    assert not out.exists()
    assert converter_script().name == "convert_hf_to_gguf.py"  # the install step put it there
    with pytest.raises(ValueError, match="no config.json"):
        export_gguf(tmp_path, tmp_path / "x.gguf")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text('{"architectures": ["NoSuchModelForCausalLM"]}')
    with pytest.raises(RuntimeError, match="converting .*odd to GGUF failed") as err:
        export_gguf(odd, tmp_path / "odd.gguf")
    assert "NoSuchModelForCausalLM" in str(err.value)  # the converter's own words
    assert not list(tmp_path.glob("odd.gguf*"))
    monkeypatch.setenv("SYLLABUS_LLAMA_CONVERT", str(tmp_path / "nope.py"))
    with pytest.raises(ValueError, match="nope.py: no such file"):
        converter_script()


def test_run_teacher_bootstrap_names_a_seed_run_with_no_data_set(tmp_path: Path):
    """A seed run with nothing to train M0 on stops the bootstrap with the reason, and
    ``<out>/report.json`` holds the bootstrap section so far (zero is a finding)."""
    from click.testing import CliRunner

    from syllabus.services.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n")  # a heading and nothing else: no chunk to ask about
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(docs), "--out", str(out), "--teacher",
                                       "bootstrap", "--base-model", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "bootstrap: the seed run made no data set to train M0 on" in result.output
    report = json.loads((out / "report.json").read_text())
    assert "seed run made no data set" in report["bootstrap"]["error"]
    assert report["bootstrap"]["seed"]["rows"] == 0
    assert (out / "bootstrap" / "seed" / "report.json").is_file()


def test_m0_options_follow_the_file_and_the_recipe(tmp_path: Path):
    """M0's ``local`` options: base-model prompts always; Gemma's chat format only for a
    Gemma file with no chat template of its own; the recipe's options only when they are
    the ``local`` teacher's."""
    import gguf as gguf_py

    from syllabus.services.cli._bootstrap import _m0_options
    from syllabus.services.runtime import Settings

    def write(name: str, arch: str, template: str | None) -> Path:
        path = tmp_path / name
        writer = gguf_py.GGUFWriter(str(path), arch)
        if template:
            writer.add_chat_template(template)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    settings = Settings()
    settings.teacher.kind = "openai"
    settings.teacher.options = {"temperature": 0.1}
    bare = write("bare.gguf", "gemma3", None)
    assert _m0_options(bare, settings) == {"base_model": True, "chat_format": "gemma"}
    templated = write("templated.gguf", "gemma3", "{{ messages }}")
    assert _m0_options(templated, settings) == {"base_model": True}
    assert _m0_options(write("llama.gguf", "llama", None), settings) == {"base_model": True}
    settings.teacher.kind = "local"
    settings.teacher.options = {"model": "x", "n_ctx": 2048, "base_model": False}
    assert _m0_options(templated, settings) == {"base_model": False, "n_ctx": 2048}
