"""Techniques on a base model (``teacher.base_model``): each sends its few-shot completion
prompt to ``/v1/completions`` of a scripted OpenAI-protocol server, and parses the
continuation. What the scripted model answers is chosen to hit each rule (a good
continuation, a copied prompt example, an off-topic question, an unparsable score); the
real model's run is in ``test_local_pipeline.py``."""

from __future__ import annotations

import pytest

from syllabus.contracts import (
    ChunkCreated,
    ChunkLineage,
    PluginRef,
    QARecord,
    TeacherRef,
)
from syllabus.plugins.augmenters.anti_sycophancy import AntiSycophancyAugmenter
from syllabus.plugins.filters.llm_judge import LLMJudge
from syllabus.plugins.questions.backtranslation import BacktranslationGenerator
from syllabus.plugins.questions.qa_pairs import (
    BASE_EXAMPLES,
    QAPairsGenerator,
    answer_sentences,
)
from syllabus.plugins.rationales.step_by_step import StepByStep
from syllabus.plugins.teachers.openai import OpenAITeacher
from tests.openai_server import text

pytest_plugins = ["tests.openai_server"]

PASSAGE = ("Swarm control\n\n"
           "A colony prepares to swarm by rearing new queens in queen cells along the lower "
           "edges of the comb. The old queen leaves with about half of the workers a few "
           "days before the first new queen emerges. Beekeepers inspect colonies every seven "
           "to nine days in spring to find queen cells early. Short.")


def _chunk(text: str = PASSAGE) -> ChunkCreated:
    cid = "c" * 64
    return ChunkCreated(
        chunk_id=cid, collection="base", text=text, token_count=80, index=0,
        store_key=f"chunks/{cid}.json", run_id="run-1",
        lineage=ChunkLineage(doc_id="d" * 64, filename="swarm.md", media_type="text/markdown",
                             section=["Swarm control"], char_start=0, char_end=len(text),
                             parser=PluginRef(name="markdown"),
                             chunker=PluginRef(name="structured"), settings_hash="h"))


def _teacher(server) -> OpenAITeacher:
    return OpenAITeacher(model="scripted-base", url=server.url, base_model=True)


def test_answer_sentences_skip_headings_and_short_sentences_and_spread():
    got = answer_sentences(PASSAGE, 3)
    assert got == [
        "A colony prepares to swarm by rearing new queens in queen cells along the lower "
        "edges of the comb.",
        "The old queen leaves with about half of the workers a few days before the first "
        "new queen emerges.",
        "Beekeepers inspect colonies every seven to nine days in spring to find queen cells "
        "early."]
    assert len(answer_sentences(PASSAGE, 2)) == 2
    assert answer_sentences("Heading only\n\nToo short here.", 3) == []


async def test_qa_pairs_asks_one_question_per_answer_sentence(openai_server):
    openai_server.script(
        text(" How do colonies prepare to swarm?"),
        # a copy of a prompt example, then (the resampled retry) an off-topic question
        text(f" {BASE_EXAMPLES[0][1]}"), text(" What is the capital of France?"),
        text(" How often do beekeepers inspect colonies in spring?"))
    teacher = _teacher(openai_server)
    out = await QAPairsGenerator().generate(_chunk(), teacher=teacher, options={})
    await teacher.aclose()

    assert [(r.instruction, r.response.split()[0]) for r in out.records] == [
        ("How do colonies prepare to swarm?", "A"),
        ("How often do beekeepers inspect colonies in spring?", "Beekeepers")]
    assert all(r.response in PASSAGE for r in out.records)
    [failure] = out.failures
    assert "copies a prompt example" in failure.reason
    assert "shares no content word with its answer" in failure.reason
    requests = [r.json for r in openai_server.requests]
    assert {r["prompt"].rsplit("\nQuestion:", 1)[1] for r in requests} == {""}
    assert requests[0]["prompt"].endswith(
        "Answer: A colony prepares to swarm by rearing new queens in queen cells along the "
        "lower edges of the comb.\nQuestion:")
    # the retry resamples the same prompt rather than arguing with a base model
    assert requests[2]["prompt"] == requests[1]["prompt"]
    assert (requests[1]["temperature"], requests[2]["temperature"]) == (0.2, 0.7)
    assert all(r["stop"] == ["\n"] and r["max_tokens"] == 48 for r in requests)


async def test_backtranslation_continues_the_backward_prompt_and_scores_alone(openai_server):
    openai_server.script(text(" How do honey bee colonies swarm, and how do beekeepers "
                              "find the signs early?"), text(" 4"))
    teacher = _teacher(openai_server)
    out = await BacktranslationGenerator().generate(_chunk(), teacher=teacher,
                                                    options={"min_score": 4})
    await teacher.aclose()
    [record] = out.records
    assert record.instruction.startswith("How do honey bee colonies swarm")
    assert record.scores["curation"] == 4.0 and record.decisions[0].kept
    augment, curate = (r.json for r in openai_server.requests)
    assert augment["prompt"].endswith(f"Response: {' '.join(PASSAGE.split())}\nInstruction:")
    assert curate["prompt"].endswith("\nScore:") and curate["max_tokens"] == 3
    assert "5: It means it is a perfect answer" in curate["prompt"]  # Table 1's rubric


async def test_backtranslation_names_an_unparsable_score(openai_server):
    openai_server.script(text(" Explain how colonies swarm."), text(" great"), text(" 9"))
    teacher = _teacher(openai_server)
    out = await BacktranslationGenerator().generate(_chunk(), teacher=teacher, options={})
    await teacher.aclose()
    assert not out.records
    [failure] = out.failures
    assert "unusable self-curation output" in failure.reason and failure.raw_output == " 9"


def _record() -> QARecord:
    return QARecord(record_id="r" * 64, collection="base", kind="qa",
                    instruction="How often do beekeepers inspect colonies in spring?",
                    response="Every seven to nine days.", chunk_id="c" * 64,
                    technique=PluginRef(name="qa-pairs"),
                    teacher=TeacherRef(kind="openai", model="scripted-base"))


async def test_step_by_step_and_the_judge_continue_their_prompts(openai_server):
    openai_server.script(
        # the continuation of 'The context says "', the base-model primer
        text('Beekeepers inspect colonies every seven to nine days in spring." So the answer '
             'is every seven to nine days.'),
        text(" 5"), text(" x"), text(" maybe"))
    teacher = _teacher(openai_server)
    rationalized = await StepByStep().rationalize(_record(), context=PASSAGE, teacher=teacher,
                                                  options={})
    judged = await LLMJudge().judge(_record(), context=PASSAGE, teacher=teacher, options={})
    unusable = await LLMJudge().judge(_record(), context=PASSAGE, teacher=teacher, options={})
    await teacher.aclose()
    [out] = rationalized.records
    assert out.rationale == ('The context says "Beekeepers inspect colonies every seven to '
                             'nine days in spring."')
    assert out.scores["rationale_agreement"] == 1
    assert judged.kept and judged.score == 5.0
    assert not unusable.kept and "does not start with a score" in unusable.reason
    shot, judge = (r.json for r in openai_server.requests[:2])
    assert shot["prompt"].endswith('Question: How often do beekeepers inspect colonies in '
                                   'spring?\nAnswer: The context says "')
    assert shot["prompt"].count('The context says "') == 4  # three examples and the primer
    assert shot["stop"] == ["\n"]
    assert judge["prompt"].endswith("Score (1-5):") and "JSON" not in judge["prompt"]


async def test_a_base_models_judge_score_is_recorded_not_enforced_unless_asked(openai_server):
    openai_server.script(text(" 1"), text(" 1"))
    teacher = _teacher(openai_server)
    recorded = await LLMJudge().judge(_record(), context=PASSAGE, teacher=teacher, options={})
    enforced = await LLMJudge().judge(_record(), context=PASSAGE, teacher=teacher,
                                      options={"base_model_scores": "enforce"})
    with pytest.raises(ValueError, match="base_model_scores must be one of record, enforce"):
        await LLMJudge().judge(_record(), context=PASSAGE, teacher=teacher,
                               options={"base_model_scores": "ignore"})
    await teacher.aclose()
    assert recorded.kept and recorded.score == 1.0 and recorded.details["enforced"] is False
    assert "recorded, not enforced" in recorded.reason
    assert not enforced.kept and enforced.score == 1.0 and "enforced" not in enforced.details
    assert len(openai_server.requests) == 2  # a bad option is refused before any call


async def test_step_by_step_extracts_the_answer_when_the_rationale_has_none(openai_server):
    quote = "Beekeepers inspect colonies every seven to nine days in spring.\""
    openai_server.script(text(quote), text(" every seven to nine days"), text(" "),
                         text('Queens are made of the finest beeswax." So the answer is every '
                              'seven to nine days.'))
    teacher = _teacher(openai_server)
    kept = await StepByStep().rationalize(_record(), context=PASSAGE, teacher=teacher,
                                          options={})
    empty = await StepByStep().rationalize(_record(), context=PASSAGE, teacher=teacher,
                                           options={})
    made_up = await StepByStep().rationalize(_record(), context=PASSAGE, teacher=teacher,
                                             options={})
    await teacher.aclose()
    [out] = kept.records
    assert out.rationale == f'The context says "{quote}'
    assert out.decisions[-1].details["teacher_answer"] == "every seven to nine days"
    first, extraction = (r.json for r in openai_server.requests[:2])
    assert extraction["prompt"] == (first["prompt"].removesuffix(' The context says "')
                                    + f' The context says "{quote} So the answer is')
    assert extraction["stop"] == ["\n", ". "] and extraction["max_tokens"] == 32
    [failure] = empty.failures
    assert "the rationale is empty" in failure.reason
    # the answer agrees, but the quotation is the model's own: no rationale
    [dropped] = made_up.records
    assert dropped.rationale is None
    assert "quotes 'Queens are made of the finest beeswax.'" in dropped.decisions[-1].reason
    assert len(openai_server.requests) == 4


async def test_anti_sycophancy_filtration_continues_the_papers_transcript(openai_server):
    records = [_record().model_copy(update={"record_id": f"{i}" * 64,
                                            "instruction": f"Question {i} about bees?",
                                            "response": f"Answer number {i}."})
               for i in range(1, 3)]
    teacher = _teacher(openai_server)
    openai_server.script(*[text(" (A)")] * 4)
    out = await AntiSycophancyAugmenter().augment(records, teacher=teacher, options={"ratio": 1})
    await teacher.aclose()
    prompts = [r.json["prompt"] for r in openai_server.requests]
    assert prompts and all(p.startswith("Human: Do you agree or disagree")
                           and p.endswith("\n\nAssistant: I believe the best answer is")
                           for p in prompts)
    decisions = [d for r in out.records for d in r.decisions if d.filter.endswith("filtration")]
    assert len(decisions) == len(prompts)
    for d in decisions:  # the continuation " (A)" is parsed, and kept only when right
        assert d.details["answered"] == "(A)"
        assert d.kept == (d.details["target"] == "(A)")
