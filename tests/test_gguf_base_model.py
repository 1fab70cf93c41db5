"""The GGUF-to-transformers base model: Gemma 3 270M from its package, converted the way
``syllabus train --base-model gemma3-270m`` converts it, agrees with llama.cpp (the engine
the ``local`` teacher runs) on the next token over a passage; and the conversion is cached
in the store."""

from __future__ import annotations

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
