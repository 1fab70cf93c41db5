"""The built-in filters ``heuristic-quality`` and ``sycophancy-detector`` on realistic
honeybee records, each kept and dropped for a stated reason; the teacher mode of the
sycophancy detector against the offline ``extractive`` teacher and a local server that
speaks the OpenAI protocol with scripted replies."""

from __future__ import annotations

import json

import pytest

from syllabus.contracts import Filter, PluginRef, QARecord, TeacherRef
from syllabus.plugins.filters import heuristic, sycophancy
from syllabus.plugins.filters._text import negated_stems, numbers
from syllabus.plugins.filters.heuristic import HeuristicQualityFilter
from syllabus.plugins.filters.sycophancy import SycophancyDetector, find_claims
from syllabus.plugins.teachers.extractive import ExtractiveTeacherFactory
from syllabus.plugins.teachers.openai import OpenAITeacherFactory

from .openai_server import text

COLONY = ("A honeybee colony has one queen, tens of thousands of female workers and, in "
          "summer, a few hundred male drones. The queen can lay up to 2,000 eggs a day in "
          "early summer. Workers build the wax comb, feed the larvae and forage for nectar "
          "and pollen. Drones do not sting and do not forage; their only task is to mate "
          "with a queen from another colony.")
WOUNDS = ("Honey has been used on wounds since antiquity. During World War I, honey mixed "
          "with cod liver oil was used to dress soldiers' wounds, because its sugar and low "
          "water content keep bacteria from growing. Above the door of the Bee Museum the "
          "motto \"I keep the bees and the bees keep me\" is carved in oak.")
GERMAN = ("Ein Bienenvolk hat eine Bienenkönigin und Tausende Arbeiterinnen. Die "
          "Bienenkönigin legt im Frühsommer bis zu 2.000 Eier am Tag. Die Arbeiterinnen bauen "
          "die Waben aus Wachs und sammeln Nektar und Pollen.")

HQ = HeuristicQualityFilter()
SD = SycophancyDetector()


def _record(instruction: str, response: str, kind: str = "qa") -> QARecord:
    return QARecord(record_id="r" * 64, collection="bees", kind=kind, instruction=instruction,
                    response=response, chunk_id="c" * 64,
                    technique=PluginRef(name="qa-pairs", version="1"),
                    teacher=TeacherRef(kind="extractive", model="rules"))


async def _judge(instruction: str, response: str, context: str | None = COLONY,
                 kind: str = "qa", **options):
    return await HQ.judge(_record(instruction, response, kind), context=context, teacher=None,
                          options=options)


# --- heuristic-quality -----------------------------------------------------------------


async def test_a_clean_grounded_record_passes_every_check():
    d = await _judge("How many eggs can a honeybee queen lay in a day?",
                     "A queen can lay up to 2,000 eggs a day in early summer.")
    assert d.filter == "heuristic-quality"
    assert d.kept and d.score == 1.0 and d.threshold == 1.0
    assert d.reason == "passed all 7 checks"
    assert d.details["failed"] == [] and set(d.details["checks"]) == set(heuristic.CHECKS)
    assert d.details["checks"]["grounded"]["grounding"] == 1.0
    assert d.details["checks"]["language"]["response"]["language"] == "en"


async def test_short_factual_answers_are_legitimate():
    d = await _judge("How many workers live in a honeybee colony?", "Tens of thousands.")
    assert d.kept, d.reason
    lang = d.details["checks"]["language"]
    assert "too short to tell" in lang["response"]["note"]


async def test_too_short_and_too_long():
    d = await _judge("Do drones sting?", "No.")
    assert not d.kept
    assert d.details["failed"] == ["length"]
    assert "length: the response has 1 word, under the minimum of 2" in d.reason
    assert d.reason.startswith("failed 1 of ")

    long_question = "Explain " + "why the honeybee queen lays so many eggs, " * 30 + "please."
    d = await _judge(long_question, "A queen can lay up to 2,000 eggs a day.")
    assert not d.kept
    assert f"the instruction has {len(long_question)} characters, over the maximum of 1000" \
        in d.reason

    d = await _judge("What do worker bees do?", "Workers build the wax comb, feed the larvae "
                     "and forage for nectar and pollen.", max_response_chars=40)
    assert not d.kept and "over the maximum of 40" in d.reason
    assert d.details["checks"]["length"]["response_chars"] > 40


async def test_lima_length_window_drops_short_answers_and_keeps_long_form_ones():
    short = "A queen can lay up to 2,000 eggs a day in early summer."
    d = await _judge("How many eggs can a honeybee queen lay in a day?", short,
                     length_window="lima")
    assert not d.kept and d.details["failed"] == ["length"]
    assert f"the response has {len(short)} characters, under the minimum of 1200" in d.reason
    # a long-form answer inside LIMA's 1,200-4,096 window passes; over 4,096 does not
    sentence = "A queen can lay up to 2,000 eggs a day in early summer. "
    d = await _judge("How many eggs can a honeybee queen lay in a day?", sentence * 25,
                     context=None, length_window="lima", first_person=False)
    assert d.details["checks"]["length"]["passed"], d.reason
    d = await _judge("How many eggs can a honeybee queen lay in a day?", sentence * 80,
                     context=None, length_window="lima")
    assert "over the maximum of 4096" in d.reason
    # a bound set by name wins over the window's; a window that is not known is named
    d = await _judge("How many eggs can a honeybee queen lay in a day?", short,
                     length_window="lima", min_response_chars=10)
    assert d.kept, d.reason
    with pytest.raises(ValueError, match="length_window must be one of qa, lima"):
        await _judge("Why?", short, length_window="long")


async def test_an_answer_not_grounded_in_its_chunk_is_dropped():
    d = await _judge("How long does a honeybee queen live?",
                     "A queen usually lives for three to five years, much longer than the "
                     "workers, who survive about six weeks in summer.")
    assert not d.kept
    assert d.details["failed"] == ["grounded"]
    assert "grounded: only " in d.reason and "appear in the source, under 60%" in d.reason
    g = d.details["checks"]["grounded"]
    assert g["grounding"] < 0.6 and "weeks" in g["missing"] and "queen" not in g["missing"]
    # with no source context the check is skipped, and the decision says so
    d = await _judge("How long does a honeybee queen live?",
                     "A queen usually lives for three to five years.", context=None)
    assert d.kept and d.details["skipped"] == ["grounded"]
    assert "grounded skipped: the record has no source context" in d.reason
    # numbers match however they are written
    d = await _judge("How many eggs can a honeybee queen lay in a day?",
                     "Up to two thousand eggs a day.")
    assert d.details["checks"]["grounded"]["grounding"] == 1.0


async def test_a_backtranslation_record_is_grounded_by_construction():
    d = await _judge("Describe the members of a honeybee colony and their tasks.", COLONY,
                     kind="backtranslation")
    assert d.kept, d.reason


@pytest.mark.parametrize(("instruction", "expected"), [
    ("What does the passage say about drones?", "it refers to 'the passage'"),
    ("According to the document, what do workers build?", "according to the document"),
    ("As mentioned above, what do drones do?", "'as mentioned'"),
    ("what do worker bees build?", "does not start with a capital letter"),
    ("Worker bees build the comb from", "neither a question ending in '?' nor starts with"),
    ("Describe what worker bees feed and", "the instruction is a fragment (ends on 'and')"),
])
async def test_questions_must_be_well_formed_and_self_contained(instruction, expected):
    d = await _judge(instruction, "Workers build the wax comb and feed the larvae.")
    assert not d.kept
    assert "well_formed" in d.details["failed"]
    assert expected in d.reason


async def test_imperative_instructions_are_well_formed():
    d = await _judge("List the tasks of worker bees.",
                     "Workers build the wax comb, feed the larvae and forage for nectar.")
    assert d.kept, d.reason
    assert d.details["checks"]["well_formed"]["imperative"] is True


async def test_promotional_and_navigation_text_is_dropped():
    d = await _judge("What do worker bees do?",
                     "Workers build the wax comb and feed the larvae. Click here to subscribe "
                     "to our newsletter!")
    assert not d.kept
    assert ("boilerplate: the response contains promotional or navigation text: 'click here', "
            "'subscribe', 'newsletter'") in d.reason
    d = await _judge("Skip to content Menu What do worker bees build?",
                     "Workers build the wax comb.", grounded=False)
    assert not d.kept and d.details["failed"] == ["boilerplate"]
    assert d.details["checks"]["boilerplate"]["instruction"] == ["skip to content", "menu"]


async def test_first_person_and_forum_answers_are_dropped():
    d = await _judge("What do worker bees feed?",
                     "In my experience I always see workers feeding the larvae. Hope this "
                     "helps!", grounded=False)
    assert not d.kept and d.details["failed"] == ["first_person"]
    assert ("first_person: the response is written in the first person or forum style: "
            "'my', 'I', 'in my experience', 'hope this helps'") in d.reason
    d = await _judge("What do worker bees feed?", "Edit: thanks for the upvotes, they feed "
                     "the larvae.", grounded=False)
    assert not d.kept and "'edit:', 'thanks for', 'upvotes'" in d.reason


async def test_roman_numerals_and_quotations_are_not_first_person():
    d = await _judge("How was honey used on wounds during World War I?",
                     "During World War I, honey mixed with cod liver oil was used to dress "
                     "soldiers' wounds.", context=WOUNDS)
    assert d.kept, d.reason
    d = await _judge("What motto is carved above the door of the Bee Museum?",
                     'The motto reads "I keep the bees and the bees keep me".', context=WOUNDS)
    assert d.kept, d.reason
    # ... but the same answer with a pronoun outside the quotation is dropped
    d = await _judge("How was honey used on wounds during World War I?",
                     "During World War I, I think honey was used to dress wounds.",
                     context=WOUNDS)
    assert not d.kept and d.details["checks"]["first_person"]["cues"] == ["I"]


@pytest.mark.parametrize(("response", "expected"), [
    ('Workers build the comb (see <a href="https://example.org/bees">this guide</a>).',
     "a link ('https://example.org/bees\">this"),
    ("Workers build the comb &amp; feed the larvae.", "an HTML entity ('&amp;')"),
    ("Workers build the comb, as the [beekeeping guide](guide.html) explains.",
     "a Markdown link ('[beekeeping guide](guide.html)')"),
    ("Workers build the comb.<br/>They feed the larvae.", "an HTML tag ('<br/>')"),
])
async def test_leftover_links_and_html_are_dropped(response, expected):
    d = await _judge("What do worker bees do?", response, grounded=False)
    assert not d.kept and d.details["failed"] == ["markup"]
    assert "markup: the response contains " in d.reason and expected in d.reason


async def test_a_german_record_is_not_judged_by_english_rules():
    """By default any language is fine: a German pair grounded in its German source is
    kept, and the English-only checks are passed over, named, not failed."""
    question = "Wie viele Eier legt eine Bienenkönigin an einem Tag?"
    answer = "Eine Bienenkönigin legt im Frühsommer bis zu 2.000 Eier am Tag."
    d = await _judge(question, answer, context=GERMAN)
    assert d.kept, d.reason
    assert d.details["language"] == "de"
    assert d.details["passed_over"] == ["well_formed", "boilerplate", "first_person"]
    assert d.details["checks"]["grounded"]["passed"] is True
    assert "well_formed passed over: it works in English (en) only; the record is in " \
        "German (de)" in d.reason


async def test_language_must_be_one_of_the_configured_ones():
    question = "Wie viele Eier legt eine Bienenkönigin an einem Tag?"
    answer = "Eine Bienenkönigin legt im Frühsommer bis zu 2.000 Eier am Tag."
    d = await _judge(question, answer, context=GERMAN, languages=["en"])
    assert not d.kept and d.details["failed"] == ["language"]
    assert ("language: the instruction is in German (de), not in the configured language(s) "
            "en; the response is in German (de)") in d.reason
    d = await _judge(question, answer, context=GERMAN, languages=["en", "de"])
    assert d.kept, d.reason


async def test_a_response_in_another_language_than_its_question_fails():
    question = "Wie viele Eier legt eine Bienenkönigin an einem Tag?"
    answer = "A honeybee queen lays up to 2,000 eggs a day in early summer."
    d = await _judge(question, answer, context=GERMAN, grounded=False)
    assert not d.kept and d.details["failed"] == ["language"], d.reason
    assert "the instruction is in German (de) and the response in English (en)" in d.reason
    d = await _judge(question, answer, context=GERMAN, grounded=False, same_language=False)
    assert d.kept, d.reason


async def test_checks_can_be_disabled_and_tuned():
    q = "How long does a honeybee queen live?"
    a = "A queen usually lives for three to five years, much longer than the workers."
    assert not (await _judge(q, a)).kept
    d = await _judge(q, a, grounded=False)
    assert d.kept and d.details["disabled"] == ["grounded"] and "grounded" not in \
        d.details["checks"]
    assert d.reason == "passed all 6 checks"
    d = await _judge(q, a, min_grounding=0.2)
    assert d.kept and d.details["checks"]["grounded"]["threshold"] == 0.2
    d = await _judge(q, a, max_failures=1)
    assert d.kept and d.reason.startswith("kept with 1 of 7 checks failed (max_failures=1): "
                                          "grounded: only ")
    assert d.score == pytest.approx(6 / 7, abs=1e-4) and d.threshold == pytest.approx(6 / 7,
                                                                                      abs=1e-4)
    # two failures: both named, score is the share of checks passed
    d = await _judge("What does the passage say about queens?", a)
    assert d.details["failed"] == ["grounded", "well_formed"]
    assert d.score == pytest.approx(5 / 7, abs=1e-4)
    with pytest.raises(ValueError, match="unknown option.*min_groundng"):
        await _judge(q, a, min_groundng=0.5)
    with pytest.raises(ValueError, match="must be true or false"):
        await _judge(q, a, grounded="no")


# --- sycophancy-detector ---------------------------------------------------------------

CLAIM = "I'm sure a queen lays 20,000 eggs a day, right?"
AGREES = "Yes, you're right, a queen lays 20,000 eggs a day."


async def _syc(instruction: str, response: str, context: str | None = COLONY, *,
               teacher=None, **options):
    return await SD.judge(_record(instruction, response), context=context, teacher=teacher,
                          options=options)


async def test_agreeing_with_a_claim_the_source_contradicts_is_dropped():
    d = await _syc(CLAIM, AGREES)
    assert d.filter == "sycophancy-detector"
    assert not d.kept and d.score == 0.0 and d.threshold == 0.6
    assert d.reason == (
        "the response agrees with the claim 'a queen lays 20,000 eggs a day' asserted in the "
        "prompt, which the source does not support: the source does not state the number "
        "20,000; it says 2,000: 'The queen can lay up to 2,000 eggs a day in early summer.'")
    [claim] = d.details["claims"]
    assert claim["cue"] == "belief" and claim["defers"] is True
    assert claim["agreement_marker"].startswith("Yes") and claim["support"]["supported"] is False


async def test_agreeing_with_a_claim_the_source_supports_is_kept():
    d = await _syc(CLAIM, AGREES, context=COLONY.replace("2,000", "20,000"))
    assert d.kept and d.score == 1.0
    assert d.reason.startswith("the response agrees with the claim 'a queen lays 20,000 eggs "
                               "a day' asserted in the prompt, which the source supports")


async def test_no_opinion_in_the_prompt_is_kept():
    d = await _syc("How many eggs can a honeybee queen lay in a day?",
                   "Yes, a queen lays 20,000 eggs a day.")
    assert d.kept and d.reason == "no opinion asserted in the prompt"


async def test_a_response_that_politely_corrects_the_user_is_kept():
    d = await _syc(CLAIM, "Actually, according to the source, a queen lays up to 2,000 eggs a "
                          "day in early summer, not 20,000.")
    assert d.kept and d.score == 1.0
    assert d.reason == ("the response does not defer to the claim 'a queen lays 20,000 eggs a "
                        "day' asserted in the prompt (it corrects it: 'Actually')")


@pytest.mark.parametrize(("response", "kept", "how"), [
    ("No, a queen lays up to 2,000 eggs a day in early summer.", True, "corrects it: 'No'"),
    ("That's not right: the source gives 2,000 eggs a day.", True,
     "corrects it: 'That's not right'"),
    ("You're right to ask! Actually, a queen lays up to 2,000 eggs a day in early summer.",
     True, "contradicts it: 'Actually, a queen lays up to 2,000 eggs"),
    ("Yes, you're right. In fact, it can be even more.", False, "does not support"),
    ("Sure, 20,000.", False, "does not support"),
])
async def test_agreement_markers_against_corrections(response, kept, how):
    d = await _syc(CLAIM, response)
    assert d.kept is kept and how in d.reason


async def test_a_bare_agreement_defers_and_a_negation_flip_is_caught():
    d = await _syc(CLAIM, "Absolutely, that's a well-known fact.")
    assert not d.kept and d.details["claims"][0]["restated_in"] is None
    d = await _syc("Isn't it true that drones sting?", "Yes, drones sting to defend the hive.")
    assert not d.kept
    assert "the source says the opposite about 'sting': 'Drones do not sting" in d.reason
    d = await _syc("Isn't it true that drones do not sting?",
                   "That's right: drones do not sting.")
    assert d.kept, d.reason


async def test_an_unsupported_opinion_from_an_authority_is_dropped_without_a_marker():
    d = await _syc("My professor says that worker bees live for five years. How long do "
                   "workers live?", "Worker bees live for five years.")
    assert not d.kept and d.details["claims"][0]["cue"] == "authority"
    assert "which the source does not support: the source does not state the number five" \
        in d.reason


async def test_without_a_source_a_deferring_response_cannot_be_checked():
    d = await _syc(CLAIM, AGREES, context=None)
    assert d.kept and "there is no source to check it against" in d.reason
    d = await _syc(CLAIM, AGREES, context=None, drop_unverifiable=True)
    assert not d.kept


@pytest.mark.parametrize(("instruction", "claim", "cue"), [
    ("I'm sure a queen lays 20,000 eggs a day, right?", "a queen lays 20,000 eggs a day",
     "belief"),
    ("I believe that drones forage for nectar. Do they?", "drones forage for nectar", "belief"),
    ("Isn't it true that drones sting?", "drones sting", "leading question"),
    ("Everyone knows workers mate with the queen.", "workers mate with the queen",
     "common knowledge"),
    ("My professor says worker bees live for five years.", "worker bees live for five years",
     "authority"),
    ("I'm an expert beekeeper, and queens lay 20,000 eggs a day. How many is it?",
     "queens lay 20,000 eggs a day", "expertise"),
    ("Drones sting, don't they?", "Drones sting", "tag question"),
])
def test_claims_are_found_in_the_prompt(instruction, claim, cue):
    [found] = find_claims(instruction)
    assert (found.text, found.cue) == (claim, cue)


def test_questions_without_an_opinion_assert_no_claim():
    assert find_claims("How many eggs can a queen lay in a day?") == []
    assert find_claims("Do drones sting? Explain why or why not.") == []


def test_text_helpers():
    assert numbers("up to 2,000 or two thousand eggs, not twenty-five") == ["2000", "2000", "25"]
    assert negated_stems("Drones do not sting and do not forage.") == {"sting", "forag"}
    assert negated_stems("Drones sting.") == set()


async def test_teacher_mode_with_the_extractive_teacher():
    teacher = ExtractiveTeacherFactory().create({})
    d = await _syc(CLAIM, AGREES, teacher=teacher, use_teacher=True)
    assert not d.kept and d.details["method"] == "teacher"
    assert d.reason.startswith("teacher sycophancy score 2 < 3: Groundedness:")
    assert d.details["heuristic"]["kept"] is False


async def test_teacher_mode_sends_the_judge_task_and_falls_back_on_unusable_output(
        openai_server):
    teacher = OpenAITeacherFactory().create({"url": openai_server.url, "model": "scripted"})
    try:
        openai_server.script(text(json.dumps({"score": 1, "reasoning": "It repeats the "
                                              "user's wrong figure of 20,000."})))
        d = await _syc(CLAIM, AGREES, teacher=teacher, use_teacher=True)
        assert not d.kept and d.score == 0.0 and d.threshold == 0.5
        assert d.reason == ("teacher sycophancy score 1 < 3: It repeats the user's wrong "
                            "figure of 20,000.")
        prompt = openai_server.requests[0].json["messages"][0]["content"]
        assert CLAIM in prompt and AGREES in prompt and COLONY in prompt

        # no claim in the prompt: the teacher is not asked (teacher_scope "claims")
        d = await _syc("How many eggs can a queen lay?", "Up to 2,000 a day.", teacher=teacher,
                       use_teacher=True)
        assert d.kept and len(openai_server.requests) == 1

        openai_server.script(text("I cannot rate this."), text("Still no JSON, sorry."))
        d = await _syc(CLAIM, AGREES, teacher=teacher, use_teacher=True)
        assert not d.kept and d.details["method"] == "heuristic"
        assert "the teacher's verdict could not be used" in d.reason
        assert d.details["teacher"]["raw_output"] == "Still no JSON, sorry."
        assert len(openai_server.requests) == 3
    finally:
        await teacher.aclose()


async def test_teacher_mode_needs_a_teacher():
    with pytest.raises(ValueError, match="no teacher was given"):
        await _syc(CLAIM, AGREES, use_teacher=True)


# --- plugins ---------------------------------------------------------------------------


@pytest.mark.parametrize(("module", "name"), [(heuristic, "heuristic-quality"),
                                              (sycophancy, "sycophancy-detector")])
def test_plugins_register_filters(module, name):
    got: list = []
    module.register_filters(register=got.append)
    [obj] = got
    assert isinstance(obj, Filter) and obj.name == name


def test_filters_are_found_through_their_entry_points():
    from syllabus.services.runtime import PluginManager

    pm = PluginManager(allow={"heuristic-quality", "sycophancy-detector"})
    assert pm.errors == {}
    assert pm.get("register_filters", "heuristic-quality").plugin == "heuristic-quality"
    assert pm.get("register_filters", "sycophancy-detector").plugin == "sycophancy-detector"
