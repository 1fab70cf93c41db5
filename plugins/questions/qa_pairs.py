"""``qa-pairs``: question/answer pairs written from one chunk ("questions from answers").

After H2O LLM Data Studio's question-answer generation: the teacher reads one chunk, the
chunk is the only context it gets, and it writes N pairs answerable from that chunk
alone, as JSON. Pairs are validated (a question that ends in "?", a non-empty answer, no
repeats); output that does not parse is retried once with the error shown, then
recorded as a failure with the raw output.

Options: ``pairs_per_chunk`` (3), ``min_chunk_tokens`` (24: smaller chunks are skipped),
``temperature`` (0.2), ``max_tokens`` (1024).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from syllabus.contracts import (
    TASK_QA_PAIRS,
    ChatMessage,
    ChunkCreated,
    Failure,
    GenerationParams,
    PluginRef,
    QARecord,
    Teacher,
    TeacherRef,
    TechniqueOutput,
    ask,
    hookimpl,
    json_model,
    prompt_hash,
)

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

Answer with JSON only, in exactly this form:
{{"pairs": [{{"question": "...", "answer": "..."}}]}}'''


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
        messages = [ChatMessage(role="system", content=SYSTEM),
                    ChatMessage(role="user", content=PROMPT.format(n=n, passage=chunk.text))]
        params = GenerationParams(temperature=float(options.get("temperature", 0.2)),
                                  max_tokens=int(options.get("max_tokens", 1024)),
                                  json_schema=QAPairs.model_json_schema(),
                                  task=TASK_QA_PAIRS, inputs={"passage": chunk.text, "n": n})
        result = await ask(teacher, messages, params=params, parse=json_model(QAPairs))
        if not result.ok:
            return TechniqueOutput(failures=[Failure(reason=f"unusable qa-pairs output: "
                                                     f"{result.error}", raw_output=result.raw)])
        technique = PluginRef(name=self.name, version=VERSION)
        teacher_ref = TeacherRef(kind=teacher.kind, model=teacher.model)
        settings = {"n": n, "temperature": params.temperature}
        records, seen = [], set()
        for pair in result.value.pairs[:n]:
            key = pair.question.casefold()
            if key in seen:
                continue
            seen.add(key)
            records.append(QARecord(
                record_id=QARecord.make_id(chunk_id=chunk.chunk_id, technique=technique,
                                           teacher=teacher_ref, settings=settings,
                                           instruction=pair.question, response=pair.answer),
                collection=chunk.collection, kind="qa", instruction=pair.question,
                response=pair.answer, chunk_id=chunk.chunk_id, lineage=chunk.lineage,
                technique=technique, teacher=teacher_ref, prompt_hash=prompt_hash(SYSTEM, PROMPT),
                run_id=chunk.run_id))
        return TechniqueOutput(records=records)


@hookimpl
def register_question_generators(register):
    register(QAPairsGenerator())
