"""A tiny, randomly initialised chat model made on the spot: for tests and offline demos.

``init_tiny_model(out)`` trains a byte-level BPE tokenizer (the ``tokenizers`` library) on
a small English corpus, wraps it as a ``PreTrainedTokenizerFast`` with special tokens and
a ChatML chat template, builds a ``LlamaForCausalLM`` from a config with random weights,
and saves model (safetensors), tokenizer and generation config to ``out``. The directory
loads with ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained(out,
local_files_only=True)`` like any downloaded model, so the ``transformers`` teacher and
the trainer run their real code paths on a machine with no model and no network.

Nothing is ever downloaded. The model's output is noise until it is trained; it is not a
teacher for real data. The same arguments give byte-identical files.

The chat template (ChatML)::

    <s><|im_start|>system
    ...<|im_end|>
    <|im_start|>user
    ...<|im_end|>
    <|im_start|>assistant
    ...<|im_end|>

The assistant's content and its ``<|im_end|>`` sit inside ``{% generation %}``, so
``apply_chat_template(..., return_assistant_tokens_mask=True, return_dict=True)`` marks
the answer tokens (the ones a fine-tune puts its loss on). ``<|im_end|>`` is the EOS
token, so generation stops at the end of the assistant's turn.

torch, transformers and tokenizers are imported inside the functions: importing this
module costs nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "builtin_corpus", "corpus_from_files",
           "init_tiny_model"]

BOS, EOS, PAD, UNK, IM_START = "<s>", "<|im_end|>", "<pad>", "<unk>", "<|im_start|>"
#: in id order: these are ids 0..4 of every tiny tokenizer
SPECIAL_TOKENS = (UNK, PAD, BOS, IM_START, EOS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".json", ".jsonl")

# A small English corpus: base sentences, plus sentences made from templates, so that the
# merges cover everyday words, punctuation, digits and the chat roles.
_SENTENCES = (
    "A honey bee colony has one queen, thousands of workers and, in summer, a few hundred drones.",
    "The queen lays up to two thousand eggs a day during the spring build-up.",
    "Worker bees clean cells, feed larvae, build comb, guard the entrance and forage for nectar.",
    "Foragers tell their sisters where flowers are with the waggle dance.",
    "The angle of the waggle run shows the direction of the food relative to the sun.",
    "Nectar is carried home in the honey stomach and passed from bee to bee.",
    "Bees fan their wings to evaporate water until the honey is ripe, then cap the cells with wax.",
    "Varroa mites feed on developing bees and spread viruses through the colony.",
    "Beekeepers count mites with a sugar roll or an alcohol wash before they decide to treat.",
    "A colony that prepares to swarm raises new queens in queen cells along the comb.",
    "In winter the bees form a cluster and shiver their flight muscles to keep warm.",
    "Please answer the question using only the passage below.",
    "Question: What does the waggle dance tell the other bees?",
    "Answer: It tells them the direction and the distance to a source of food.",
    "Explain your reasoning step by step, then give the final answer.",
    "The document describes how to install the software, configure it and run the tests.",
    "Read the instructions carefully before you start, and ask if anything is unclear.",
    "The service returns a JSON object with the fields id, name, status and created_at.",
    "Error 404 means the resource was not found; error 500 means the server failed.",
    "Training stopped after 3 epochs, 1200 steps and a final loss of 1.25.",
    "You are a helpful assistant that answers briefly and accurately.",
    "Thank you! Could you summarise the main points in three sentences?",
    "Sure. First, the colony grows; second, it stores honey; third, it survives the winter.",
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "On Monday, 12 May 2025, the team met at 9:30 to review the report.",
    "Temperatures rose from 14 to 27 degrees, while humidity fell to 40 percent.",
    "If the file is missing, the program prints an error and exits with status 2.",
    "Each record names its source document, its chunk, the technique and the teacher.",
    "Rejected records are kept with the reason, so every decision can be explained.",
)
_SUBJECTS = ("The beekeeper", "A worker bee", "The queen", "Our team", "The model", "The reader",
             "My neighbour", "The teacher", "A student", "The system")
_VERBS = ("checks", "writes", "reads", "finds", "explains", "measures", "builds", "opens",
          "answers", "describes")
_OBJECTS = ("the hive in the morning", "a short report", "the new question", "every frame",
            "the answer carefully", "the weather today", "a simple example", "the last page",
            "two small boxes", "the results of the test")


def builtin_corpus() -> list[str]:
    """A few hundred deterministic English sentences (no files, no network)."""
    made = [f"{s} {v} {o}." for s, v, o in itertools.product(_SUBJECTS, _VERBS, _OBJECTS)]
    # every 3rd of the 1,000 combinations keeps the corpus (and the training) small
    return [*_SENTENCES, *made[::3]]


def corpus_from_files(paths: Iterable[Path | str]) -> Iterator[str]:
    """The text of each text file under ``paths`` (files or directories, sorted); files
    that are not UTF-8 text (PDFs, images) are skipped."""
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.suffix.lower() not in _TEXT_SUFFIXES:
                continue
            try:
                yield file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue


def init_tiny_model(out: Path, *, corpus: Iterable[str] | None = None, vocab_size: int = 512,
                    hidden_size: int = 64, layers: int = 2, heads: int = 4,
                    seed: int = 0) -> Path:
    """Write a tiny random Llama chat model with its own BPE tokenizer to ``out``.

    ``corpus`` (texts) trains the tokenizer; the default is ``builtin_corpus()``.
    ``vocab_size`` is an upper bound: a small corpus may yield fewer merges. The weights
    come from ``torch.manual_seed(seed)`` (the caller's RNG state is left as it was).
    Returns ``out``.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS) + 1} "
                         f"(the 256 bytes and the special tokens), got {vocab_size}")
    if hidden_size < 1 or layers < 1 or heads < 1 or hidden_size % heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be a positive multiple of heads "
                         f"({heads}), and layers ({layers}) positive")
    texts = [t for t in (builtin_corpus() if corpus is None else corpus) if t and t.strip()]
    if not texts:
        raise ValueError("init_tiny_model: the corpus has no text")

    import torch
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )
    from transformers import __version__ as transformers_version
    from transformers.utils import logging as hf_logging

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    max_positions = 4096
    # transformers 5 renamed additional_special_tokens (a list) to extra_special_tokens
    extra = "extra_special_tokens" if int(transformers_version.split(".")[0]) >= 5 \
        else "additional_special_tokens"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(texts, vocab_size),
        bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        **{extra: [IM_START]},
        model_max_length=max_positions,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD], do_sample=False)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 1 MB model needs no "Writing model shards" bar
    try:
        model.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out)
    return out


def _train_bpe(texts: list[str], vocab_size: int):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok
