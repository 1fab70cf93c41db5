"""``qa-pairs``: question/answer pairs written from one chunk ("questions from answers").

After H2O LLM Data Studio's question-answer generation: the teacher reads one chunk, the
chunk is the only context it gets, and it writes N pairs answerable from that chunk
alone, as JSON. Pairs are validated (a question that ends in "?", a non-empty answer, no
repeats); output that does not parse is retried once with the error shown, then
recorded as a failure with the raw output.

**A base model** (a teacher with ``base_model``, such as the ``local`` teacher on Gemma 3
270M) is not asked for JSON: a 270M pretrained model asked to write pairs from a passage,
few-shot, copied the passage or wrote answers the passage does not support, and repeated
one pair until the token limit (measured on ``examples/bees``). So it is used the way
answer-aware question generation uses a model, "questions from answers": the technique
takes up to N sentences of the chunk as the answers (statements of 8 to 60 words, spread
over the chunk, headings left out), and for each the model continues a few-shot
completion prompt (``BASE_PROMPT``: ``Answer: <sentence>`` / ``Question:``) with the
question, one line. A question is kept when it ends in "?", is 8 to 300 characters, is
not one of the prompt's example questions, and shares a content word with its answer (a
question about something else is rejected with the reason). This is a departure from the
chat path, where the teacher writes the answers too.

**Languages.** The teacher writes in the chunk's language (``lineage.language``), or in
the recipe's ``language`` option when set: the chat prompt names it ("Write the questions
and answers in German."), and a base model gets few-shot examples in it (English, German
and French are built in, ``BASE_EXAMPLES_BY_LANGUAGE``; another language gets the English
examples). Not in H2O's recipe, which is English only.

Options: ``pairs_per_chunk`` (3), ``min_chunk_tokens`` (24: smaller chunks are skipped),
``temperature`` (0.2), ``max_tokens`` (1024; 48 per question for a base model),
``language`` (the chunk's).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from syllabus.contracts import (
    TASK_QA_PAIRS,
    ChatMessage,
    ChunkCreated,
    Failure,
    GenerationParams,
    OutputParseError,
    PluginRef,
    QARecord,
    Teacher,
    TeacherRef,
    TechniqueOutput,
    ask,
    hookimpl,
    json_model,
    output_language,
    prompt_hash,
    prompt_language,
)

from ..filters._text import content_keys, split_sentences

__all__ = ["QAPairs", "QAPairsGenerator", "register_question_generators"]

VERSION = "1"

SYSTEM = ("You write question-and-answer pairs that teach an assistant the content of an "
          "organisation's documents. You only use facts stated in the passage you are given.")

PROMPT = '''Read the passage below and write {n} question-and-answer pairs about it.

Rules:
- Each question must be answerable from the passage alone, and must make sense without it: name what it is about; never say "the passage", "the text" or "the author".
- Each answer must be correct according to the passage and complete, in one to three full sentences.
- Use no facts that are not in the passage.
- Ask about different facts; do not repeat a question.

Passage:
"""
{passage}
"""

Write the questions and answers in {language}.
Answer with JSON only, in exactly this form:
{{"pairs": [{{"question": "...", "answer": "..."}}]}}'''


#: the few-shot examples of the base-model prompt: (answer, question), none about any
#: subject an example document covers
BASE_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Books are lent for three weeks and may be renewed twice online.",
     "How long are library books lent for?"),
    ("The water is treated with an inhibitor because untreated water corrodes the steel "
     "pipes.", "Why is the water treated with an inhibitor?"),
    ("A spermatozoon is the male reproductive cell of an animal.", "What is a spermatozoon?"),
    ("Claims over 500 euros also need the approval of a department head before finance "
     "pays them.", "What do claims over 500 euros need before finance pays them?"),
    ("The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
     "When was the Eiffel Tower completed?"),
    # last, so that the question most like the answer's own words is the freshest example:
    # with "What is a spermatozoon?" last, Gemma 3 270M asked "What is ...?" of nearly
    # every sentence, and copied that example 3 times in 28 (0 with this order)
    ("Each server rack draws about four kilowatts of power at full load.",
     "How much power does each server rack draw at full load?"),
)

#: the same examples in German and in French, with the labels in those languages, so that a
#: base model continuing a German answer writes a German question (``BASE_PROMPTS``)
BASE_EXAMPLES_BY_LANGUAGE: dict[str, tuple[tuple[str, str], tuple[tuple[str, str], ...]]] = {
    "en": (("Answer", "Question"), BASE_EXAMPLES),
    "de": (("Antwort", "Frage"), (
        ("Bücher werden für drei Wochen verliehen und können zweimal online verlängert "
         "werden.", "Wie lange werden Bücher in der Bibliothek verliehen?"),
        ("Das Wasser wird mit einem Inhibitor behandelt, weil unbehandeltes Wasser die "
         "Stahlrohre angreift.", "Warum wird das Wasser mit einem Inhibitor behandelt?"),
        ("Ein Spermatozoon ist die männliche Keimzelle eines Tieres.",
         "Was ist ein Spermatozoon?"),
        ("Anträge über 500 Euro brauchen außerdem die Zustimmung einer Abteilungsleitung, "
         "bevor die Buchhaltung sie bezahlt.",
         "Was brauchen Anträge über 500 Euro, bevor die Buchhaltung sie bezahlt?"),
        ("Der Eiffelturm in Paris wurde 1889 für die Weltausstellung fertiggestellt.",
         "Wann wurde der Eiffelturm fertiggestellt?"),
        ("Jedes Serverrack braucht unter Volllast etwa vier Kilowatt Strom.",
         "Wie viel Strom braucht jedes Serverrack unter Volllast?"),
    )),
    "fr": (("Réponse", "Question"), (
        ("Les livres sont prêtés pour trois semaines et peuvent être prolongés deux fois en "
         "ligne.", "Pour combien de temps les livres de la bibliothèque sont-ils prêtés ?"),
        ("L'eau est traitée avec un inhibiteur parce que l'eau non traitée corrode les tuyaux "
         "en acier.", "Pourquoi l'eau est-elle traitée avec un inhibiteur ?"),
        ("Un spermatozoïde est la cellule reproductrice mâle d'un animal.",
         "Qu'est-ce qu'un spermatozoïde ?"),
        ("Les notes de frais de plus de 500 euros doivent aussi être approuvées par un chef "
         "de service avant que la comptabilité les paie.",
         "Que faut-il aux notes de frais de plus de 500 euros avant leur paiement ?"),
        ("La tour Eiffel à Paris a été achevée en 1889 pour l'Exposition universelle.",
         "Quand la tour Eiffel a-t-elle été achevée ?"),
        ("Chaque baie de serveurs consomme environ quatre kilowatts à pleine charge.",
         "Combien d'électricité chaque baie de serveurs consomme-t-elle à pleine charge ?"),
    )),
}


def _base_prompt(labels: tuple[str, str], examples: tuple[tuple[str, str], ...]) -> str:
    answer, question = labels
    return "".join(f"{answer}: {a}\n{question}: {q}\n\n" for a, q in examples) + \
        f"{answer}: {{answer}}\n{question}:"


#: the base-model prompt per language it has examples in; any other language gets the
#: English one (the model may then answer in English, which heuristic-quality's
#: ``language`` check catches)
BASE_PROMPTS = {code: _base_prompt(*v) for code, v in BASE_EXAMPLES_BY_LANGUAGE.items()}
BASE_PROMPT = BASE_PROMPTS["en"]


def answer_sentences(passage: str, n: int) -> list[str]:
    """Up to ``n`` sentences of ``passage`` to be answers: statements of 8 to 60 words,
    headings and questions left out, spread evenly over the passage."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", passage):
        lines = [ln for ln in paragraph.splitlines() if ln.strip()]
        if len(lines) == 1 and not lines[0].rstrip().endswith((".", "!", ":", ";")):
            continue  # a heading
        for s in split_sentences(" ".join(" ".join(lines).split())):
            if 8 <= len(s.split()) <= 60 and s.endswith((".", "!")) and "?" not in s:
                sentences.append(s)
    if len(sentences) <= n:
        return sentences
    step = len(sentences) / n
    return [sentences[int(i * step)] for i in range(n)]


def base_question(answer: str):
    """The parser of one base-model question, for ``answer``."""
    examples = {q.casefold() for _, shots in BASE_EXAMPLES_BY_LANGUAGE.values()
                for _, q in shots}

    def parse(text: str) -> str:
        line = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not line.endswith("?"):
            raise OutputParseError(f"the question does not end with '?': {line[:120]!r}")
        if not 8 <= len(line) <= 300:
            raise OutputParseError(f"the question is not 8 to 300 characters: {line[:120]!r}")
        if line.casefold() in examples:
            raise OutputParseError(f"the question copies a prompt example: {line!r}")
        if not content_keys(line) & content_keys(answer):
            raise OutputParseError(f"the question shares no content word with its answer: "
                                   f"{line!r}")
        return line

    return parse


class QAPair(BaseModel):
    question: str = Field(min_length=8)
    answer: str = Field(min_length=1)

    @field_validator("question")
    @classmethod
    def _is_question(cls, v: str) -> str:
        v = v.strip()
        if not v.endswith("?"):
            raise ValueError(f"a question must end with '?': {v!r}")
        return v

    @field_validator("answer")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("empty answer")
        return v


class QAPairs(BaseModel):
    pairs: list[QAPair]


class QAPairsGenerator:
    name = "qa-pairs"

    async def generate(self, chunk: ChunkCreated, *, teacher: Teacher,
                       options: dict[str, Any]) -> TechniqueOutput:
        n = int(options.get("pairs_per_chunk", 3))
        if chunk.token_count < int(options.get("min_chunk_tokens", 24)) or n < 1:
            return TechniqueOutput()
        if getattr(teacher, "base_model", False):
            return await self._from_answers(chunk, teacher=teacher, options=options, n=n)
        language = output_language(chunk, options)
        prompt = PROMPT.format(n=n, passage=chunk.text,
                               language=prompt_language(language)
                               if language else "the language of the passage")
        messages = [ChatMessage(role="system", content=SYSTEM),
                    ChatMessage(role="user", content=prompt)]
        params = GenerationParams(temperature=float(options.get("temperature", 0.2)),
                                  max_tokens=int(options.get("max_tokens", 1024)),
                                  json_schema=QAPairs.model_json_schema(),
                                  task=TASK_QA_PAIRS, inputs={"passage": chunk.text, "n": n})
        result = await ask(teacher, messages, params=params, parse=json_model(QAPairs))
        if not result.ok:
            return TechniqueOutput(failures=[Failure(reason=f"unusable qa-pairs output: "
                                                     f"{result.error}", raw_output=result.raw)])
        pairs = [(p.question, p.answer) for p in result.value.pairs[:n]]
        return TechniqueOutput(records=self._records(
            chunk, teacher, pairs, settings={"n": n, "temperature": params.temperature},
            prompts=(SYSTEM, PROMPT)))

    async def _from_answers(self, chunk: ChunkCreated, *, teacher: Teacher,
                            options: dict[str, Any], n: int) -> TechniqueOutput:
        temperature = float(options.get("temperature", 0.2))
        pairs: list[tuple[str, str]] = []
        failures: list[Failure] = []
        answers = answer_sentences(chunk.text, n)
        if not answers:
            return TechniqueOutput(failures=[Failure(
                reason="qa-pairs (base model): the chunk has no sentence of 8 to 60 words to "
                       "be an answer", raw_output=chunk.text[:500])])
        language = output_language(chunk, options)
        template = BASE_PROMPTS.get(language or "en", BASE_PROMPT)
        for answer in answers:
            prompt = template.format(answer=answer)
            params = GenerationParams(
                temperature=temperature, max_tokens=min(48, int(options.get("max_tokens", 48))),
                stop=["\n"], prompt=prompt, task=TASK_QA_PAIRS,
                inputs={"passage": chunk.text, "n": n, "answer": answer})
            result = await ask(teacher, [ChatMessage(role="user", content=prompt)],
                               params=params, parse=base_question(answer))
            if result.ok:
                pairs.append((result.value, answer))
            else:
                failures.append(Failure(reason=f"unusable qa-pairs output: {result.error}",
                                        raw_output=result.raw))
        return TechniqueOutput(records=self._records(
            chunk, teacher, pairs, settings={"n": n, "temperature": temperature,
                                             "mode": "base"},
            prompts=(template,)), failures=failures)

    def _records(self, chunk: ChunkCreated, teacher: Teacher, pairs: list[tuple[str, str]],
                 *, settings: dict[str, Any], prompts: tuple[str, ...]) -> list[QARecord]:
        technique = PluginRef(name=self.name, version=VERSION)
        teacher_ref = TeacherRef(kind=teacher.kind, model=teacher.model)
        records, seen = [], set()
        for question, answer in pairs:
            key = question.casefold()
            if key in seen:
                continue
            seen.add(key)
            records.append(QARecord(
                record_id=QARecord.make_id(chunk_id=chunk.chunk_id, technique=technique,
                                           teacher=teacher_ref, settings=settings,
                                           instruction=question, response=answer),
                collection=chunk.collection, kind="qa", instruction=question,
                response=answer, chunk_id=chunk.chunk_id, lineage=chunk.lineage,
                technique=technique, teacher=teacher_ref, prompt_hash=prompt_hash(*prompts),
                run_id=chunk.run_id))
        return records


@hookimpl
def register_question_generators(register):
    register(QAPairsGenerator())
