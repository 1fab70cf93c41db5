"""``syllabus model ...``: base models made on the spot, for machines with no hub access."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["model_group"]


@click.group("model")
def model_group() -> None:
    """Make base models offline (tests, demos, air-gapped machines)."""


@model_group.command("init-tiny")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the model to (a plain Hugging Face model folder).")
@click.option("--corpus", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Text files or folders (.txt, .md, .html, .json, .jsonl...) to train the "
                   "BPE tokenizer on; repeatable. Default: a built-in English corpus.")
@click.option("--vocab-size", type=click.IntRange(min=262), default=512, show_default=True)
@click.option("--hidden-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--heads", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def init_tiny(out: Path, corpus: tuple[Path, ...], vocab_size: int, hidden_size: int,
              layers: int, heads: int, seed: int) -> None:
    """Write a tiny, randomly initialised Llama-style chat model to --out.

    The tokenizer (byte-level BPE, trained with the tokenizers library) has a ChatML chat
    template that marks assistant turns for answer-only training. Nothing is downloaded;
    the same arguments give byte-identical files. The model says nothing useful until it
    is trained: it is for tests and demos (syllabus run --train --base-model tiny uses it).
    """
    from ..runtime._tiny_model import corpus_from_files, init_tiny_model

    texts = list(corpus_from_files(corpus)) if corpus else None
    if corpus and not texts:
        raise click.BadParameter("no UTF-8 text file found in the given paths",
                                 param_hint="--corpus")
    try:
        init_tiny_model(out, corpus=texts, vocab_size=vocab_size, hidden_size=hidden_size,
                        layers=layers, heads=heads, seed=seed)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    click.echo(f"tiny model written to {out} ({size / 1e6:.1f} MB)")
