"""The ``extractive`` teacher: rule-based question generation, backtranslation, curation,
extractive rationales and judging, through the real plugin entry point. No model, no
network: every assertion is about deterministic rules and can fail."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path

import pluggy
import pytest

from syllabus.contracts import (
    PROJECT,
    TASKS,
    ChatMessage,
    GenerationParams,
    Teacher,
    TeacherError,
    TeacherFactory,
    hookspecs,
)
from syllabus.plugins.teachers import extractive
from syllabus.plugins.teachers._extractive_text import split_sentences

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "bees"

COLONY = """The Honeybee Colony

A honeybee colony is a family of several thousand bees that live together in one nest.
Propolis is a resin that bees collect from tree buds. It is used to seal small gaps in
the hive. A worker bee lives about six weeks in summer. A queen lays up to 2,000 eggs a
day in early summer. Drones are male bees that mate with queens from other colonies.
Worker bees build comb in the dark hive. Beekeepers use smoke to calm the bees during
inspections. A swarm is usually gentle because the bees are full of honey. In 1851,
Lorenzo Langstroth described the bee space in his hive design.
"""

FORAGING = """Foragers are older worker bees that collect nectar, pollen, water and
propolis for the colony. A forager visits up to a hundred flowers on a single trip. Nectar
is a sugary liquid that flowers produce to attract pollinators. Foragers carry nectar home
in a honey stomach. The waggle dance tells other workers the direction and distance of a
rich food source. Scout bees search the countryside for new sources in early spring. Bees
see ultraviolet light, which guides them to the centre of a flower. Pollen is the main
source of protein for the colony. Nurse bees feed pollen to the growing larvae.
"""

WINTER = """Honeybees do not hibernate. In late autumn, the bees form a tight winter
cluster around the queen. Bees in the centre of the cluster produce heat by shivering
their flight muscles. A strong colony needs about twenty kilograms of honey for the
winter. Beekeepers should check the weight of each hive in October. Damp kills more
colonies than cold, because water drips from the roof onto the cluster. Mouse guards are
used to keep mice out of the hive during the winter.
"""

PASSAGES = [COLONY, FORAGING, WINTER]
STOP = {"a", "an", "the", "of", "to", "in", "on", "is", "are", "and", "for", "by", "do",
        "does", "what", "why", "when", "how", "who", "which", "it", "they"}


def run(task: str | None, messages: list[ChatMessage] | None = None, **inputs) -> str:
    teacher = extractive.ExtractiveTeacher()
    completion = asyncio.run(teacher.complete(
        messages or [], params=GenerationParams(task=task, inputs=inputs)))
    return completion.text


def pairs(passage: str, n: int = 50) -> list[dict[str, str]]:
    out = json.loads(run("qa_pairs", passage=passage, n=n))
    assert set(out) == {"pairs"}
    return out["pairs"]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace(",", ""))


def f1(prediction: str, truth: str) -> float:
    """SQuAD token F1 (lower case, no punctuation or articles)."""
    pred = [w for w in words(prediction) if w not in {"a", "an", "the"}]
    gold = [w for w in words(truth) if w not in {"a", "an", "the"}]
    common = sum((Counter(pred) & Counter(gold)).values())
    if not common:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)


def answer_of(rationale: str) -> str:
    last = rationale.strip().splitlines()[-1]
    m = re.fullmatch(r"So the answer is (.+)\.", last)
    assert m, f"last line is not 'So the answer is <answer>.': {last!r}"
    return m.group(1)


def questions(passage: str) -> dict[str, str]:
    return {p["question"]: p["answer"] for p in pairs(passage)}


# --- qa_pairs --------------------------------------------------------------------------


@pytest.mark.parametrize("passage", PASSAGES, ids=["colony", "foraging", "winter"])
def test_qa_pairs_are_well_formed_and_answered_from_the_passage(passage):
    found = pairs(passage)
    assert len(found) >= 4, found
    passage_words = set(words(passage))
    for pair in found:
        assert set(pair) == {"question", "answer"}
        q, a = pair["question"], pair["answer"]
        assert q.endswith("?") and q[0].isupper(), q
        assert q.split()[0] in {"What", "Which", "Who", "When", "Why", "How", "Where", "By"}, q
        assert not re.search(r"\b(it|they|them|this|these|those|he|she)\b", q, re.I), q
        assert a.strip() and a.strip()[0].isupper(), pair
        missing = [w for w in words(a) if w not in passage_words]
        assert not missing, (pair, missing)
        # the question does not give its own answer away
        assert a.lower().rstrip(".") not in q.lower(), pair


def test_definition_rule():
    found = questions(COLONY)
    assert found["What is propolis?"] == "Propolis is a resin that bees collect from tree buds."
    assert found["What are drones?"].startswith("Drones are male bees")


def test_quantity_and_duration_rules():
    found = questions(COLONY)
    assert found["How long does a worker bee live in summer?"] == \
        "A worker bee lives about six weeks in summer."
    how_many = [q for q in found if q.startswith("How many eggs does a queen lay a day")]
    assert how_many, found
    assert "2,000" in found[how_many[0]] and "2,000" not in how_many[0]
    assert "How many flowers does a forager visit on a single trip?" in questions(FORAGING)


def test_time_rules():
    found = questions(FORAGING)
    assert "When do scout bees search the countryside for new sources?" in found
    winter = questions(WINTER)
    assert "When do the bees form a tight winter cluster around the queen?" in winter
    assert "When should beekeepers check the weight of each hive?" in winter
    assert "In late autumn" in winter["When do the bees form a tight winter cluster around the queen?"]


def test_cause_purpose_and_name_rules():
    found = questions(COLONY)
    assert "Why is a swarm usually gentle?" in found
    assert "because the bees are full of honey" in found["Why is a swarm usually gentle?"]
    assert "What do beekeepers use smoke for?" in found
    assert found["Who described the bee space in his hive design?"] == "Lorenzo Langstroth"
    assert "When did Lorenzo Langstroth describe the bee space in his hive design?" in found
    assert "What are mouse guards used for?" in questions(WINTER)


def test_inversion_do_support_and_pronoun_resolution():
    found = questions(COLONY)
    # do-support with a lemmatised verb: "Worker bees build comb" -> "What do ... build"
    assert found["What do worker bees build in the dark hive?"] == "Comb"
    # "It is used to seal ..." follows "Propolis is ...": the pronoun becomes propolis
    assert found["What is propolis used for?"] == \
        "Propolis is used to seal small gaps in the hive."
    # a pronoun with nothing to refer to is never asked about
    alone = pairs("They swarm in early summer because the hive is crowded with brood.")
    assert alone == []


def test_n_is_respected_and_output_is_deterministic():
    everything = pairs(COLONY)
    assert len(everything) > 3
    for n in (1, 2, 3):
        assert pairs(COLONY, n) == everything[:n]
    assert pairs(COLONY, 0) == []
    first = run("qa_pairs", passage=FORAGING, n=5)
    assert run("qa_pairs", passage=FORAGING, n=5) == first
    # the chat messages are ignored: only the task and its inputs count
    assert run("qa_pairs", [ChatMessage(role="user", content="anything")],
               passage=FORAGING, n=5) == first
    assert first.startswith('{"pairs": [{"question": ')


def test_output_does_not_depend_on_the_process_hash_seed():
    script = ("import json, sys\n"
              "from syllabus.plugins.teachers.extractive import ExtractiveTeacher\n"
              "t = ExtractiveTeacher()\n"
              "text = sys.stdin.read()\n"
              "out = t.run('qa_pairs', {'passage': text, 'n': 8})\n"
              "print(out)\n"
              "for p in json.loads(out)['pairs']:\n"
              "    print(t.run('rationale', {'question': p['question'], 'context': text}))\n"
              "print(t.run('backtranslate', {'response': text}))\n")
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], input=COLONY + FORAGING, env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1
    assert "So the answer is" in outputs.pop()


def test_no_usable_sentence_gives_empty_pairs():
    text = "Contents\n\nHome | Shop | Contact\n\nClick here!\n\nBees.\n\nSee page 4."
    assert run("qa_pairs", passage=text, n=3) == '{"pairs": []}'
    assert run("qa_pairs", passage="", n=3) == '{"pairs": []}'


def test_sentence_splitting_keeps_abbreviations_and_decimals():
    text = ("Dr. Smith keeps bees, e.g. in Kent, and sells honey. A full frame holds 2.5 kg "
            "of honey. Bees fly at 25 km/h on average.")
    got = [s.text for s in split_sentences(text)]
    assert got == ["Dr. Smith keeps bees, e.g. in Kent, and sells honey.",
                   "A full frame holds 2.5 kg of honey.", "Bees fly at 25 km/h on average."]


# --- backtranslate -----------------------------------------------------------------------


def test_backtranslate_writes_one_line_instruction_about_the_topic():
    definitional = run("backtranslate", response=(
        "Propolis is a resin that bees collect from tree buds. They use it to seal gaps in "
        "the hive and to varnish the inside of the cells."))
    assert definitional == "What is propolis?"
    how = run("backtranslate", response=(
        "Honeybee colonies survive winter by forming a tight cluster. Bees in the centre "
        "shiver their flight muscles to make heat, and the cluster moves slowly across the "
        "combs, eating stored honey."))
    assert how == "Explain how honeybee colonies survive winter."
    why = run("backtranslate", response=(
        "Colonies swarm because the hive becomes crowded and the queen's scent no longer "
        "reaches every worker."))
    assert why == "Why do colonies swarm?"
    headed = run("backtranslate", response="# Preparing Colonies for Winter\n\n" + WINTER)
    assert headed == "Explain how to prepare colonies for winter."
    topical = run("backtranslate", response=FORAGING)
    for text in (definitional, how, why, headed, topical):
        assert "\n" not in text and text[0].isupper() and text[-1] in ".?", text
    assert re.search(r"forager", topical, re.I), topical


# --- curate ------------------------------------------------------------------------------

CLEAN = ("Honeybee colonies survive the winter by forming a tight cluster around the queen. "
         "Bees in the centre of the cluster shiver their flight muscles to produce heat, and "
         "the cluster moves slowly across the combs so that it stays in contact with the "
         "stored honey. A colony therefore needs enough honey within reach of the cluster.")
FORUM = ("Great question lol! In my experience my bees always do fine, I never worry about "
         "it. Click here to subscribe to my newsletter and share your comments below. Check "
         "out www.example-bee-shop.com for a discount on hive wraps")


def score(text: str) -> int:
    lines = text.strip().splitlines()
    m = re.fullmatch(r"Score:\s*([1-5])", lines[-1])
    assert m, lines[-1]
    # one line of reasoning in one to three sentences, then the score
    assert len(lines) == 2 and lines[0].endswith(".")
    assert 1 <= len(re.findall(r"[.!?](?:\s|$)", lines[0])) <= 3, lines[0]
    return int(m.group(1))


def test_curate_scores_clean_answers_high_and_forum_promotion_low():
    instruction = "How do honeybee colonies survive the winter?"
    good = run("curate", instruction=instruction, response=CLEAN)
    bad = run("curate", instruction=instruction, response=FORUM)
    assert score(good) >= 4
    assert score(bad) <= 2
    assert "first-person or forum style" in bad and "promotional" in bad
    assert "ends mid-sentence" in bad
    off_topic = run("curate", instruction="What is propolis made from?", response=CLEAN)
    assert score(off_topic) < score(good)
    # on topic, but wrapped in navigation and promotion (Humpback's score-1 example)
    promoted = run("curate", instruction=instruction, response=(
        "Menu | Home | Shop. " + CLEAN + " Click here to subscribe to our newsletter and get "
        "a discount on winter feeders. We use cookies."))
    assert score(promoted) <= 2 and "promotional or navigation text" in promoted
    personal = run("curate", instruction=instruction, response=(
        "In my experience, my honeybee colonies survive the winter by forming a tight cluster around "
        "the queen, and I never open the hive before spring."))
    assert score(personal) == 3 and "first-person" in personal
    echo = run("curate", instruction=instruction, response=instruction)
    assert score(echo) <= 2 and "repeats the instruction" in echo


def test_curate_checks_that_the_instruction_fits_the_response():
    """Humpback's 5 needs "a clear focus on addressing the instruction": a response on the
    same subject that does not answer *this* instruction is not a 5."""
    assert score(run("curate", instruction="How do honeybee colonies survive the winter?",
                     response=CLEAN)) == 5
    # the same subject, another question: it asks for a quantity and gets no number
    how_long = run("curate", instruction="How long do honeybee colonies stay in the "
                   "winter cluster?", response=CLEAN)
    assert score(how_long) < 5
    assert "asks for a quantity and it gives no number" in how_long
    # ... or names a topic word the response never mentions
    varroa = run("curate", instruction="How do honeybee colonies survive varroa mites in "
                 "the winter?", response=CLEAN)
    assert score(varroa) < 5 and 'does not mention "varroa", "mites"' in varroa
    # Table 1: "numbered list does not start from the beginning"
    steps = ("3. Lift the frames out of the honey super and brush the bees off.\n"
             "4. Uncap the cells with a heated knife.\n"
             "5. Spin the frames in the extractor and strain the honey into jars.")
    cut = run("curate", instruction="List the steps to harvest honey from the frames.",
              response=steps)
    assert score(cut) <= 3 and "numbered list starts at 3" in cut
    whole = run("curate", instruction="List the steps to harvest honey from the frames.",
                response=steps.replace("3.", "1.").replace("4.", "2.").replace("5.", "3."))
    assert score(whole) > score(cut), whole
    # a response that opens on something else
    drift = run("curate", instruction="How do honeybee colonies survive the winter?",
                response="Propolis is a resin that bees collect from tree buds. " + CLEAN)
    assert "does not open on the instruction's topic" in drift and score(drift) < 5


# --- rationale ---------------------------------------------------------------------------


def test_rationale_quotes_the_supporting_sentence_and_extracts_the_answer():
    text = run("rationale", question="How many eggs can a queen lay in a day?", context=COLONY)
    assert text.startswith("Step by step: The passage says: ")
    assert '"A queen lays up to 2,000 eggs a day in early summer."' in text
    assert answer_of(text) == "up to 2,000 eggs"
    why = run("rationale", question="Why are swarms gentle?", context=COLONY)
    assert answer_of(why) == "because the bees are full of honey"
    who = run("rationale", question="Who described the bee space?", context=COLONY)
    assert answer_of(who) == "Lorenzo Langstroth"


def test_rationale_says_unknown_when_the_context_does_not_answer():
    text = run("rationale", question="What is the capital of France?", context=COLONY)
    assert answer_of(text) == "unknown"
    assert "does not contain the answer" in text


def test_round_trip_qa_pairs_then_rationale_agree():
    texts = [*PASSAGES, (EXAMPLES / "swarming.md").read_text(encoding="utf-8")]
    agree = total = 0
    for passage in texts:
        for pair in pairs(passage, 10):
            out = run("rationale", question=pair["question"], context=passage)
            evidence = out.rsplit("\n", 1)[0]
            # the quoted evidence holds the sentence the answer came from
            answer_words = [w for w in words(pair["answer"]) if w not in STOP]
            assert sum(w in words(evidence) for w in answer_words) >= 0.6 * len(answer_words), \
                (pair, out)
            total += 1
            agree += f1(answer_of(out), pair["answer"]) >= 0.5
    assert total >= 25
    assert agree >= 0.7 * total, f"{agree}/{total} answers agree"


# --- judge -------------------------------------------------------------------------------


def test_judge_prefers_grounded_answers():
    question = "How long does a worker bee live in summer?"
    grounded = json.loads(run("judge", instruction=question,
                              response="A worker bee lives about six weeks in summer.",
                              context=COLONY))
    invented = json.loads(run("judge", instruction=question,
                              response="Worker bees migrate to Spain and live for decades.",
                              context=COLONY))
    for verdict in (grounded, invented):
        assert set(verdict) == {"score", "reasoning"}
        assert isinstance(verdict["score"], int) and 1 <= verdict["score"] <= 5
        assert verdict["reasoning"]
    assert grounded["score"] == 5
    assert invented["score"] < grounded["score"]
    malformed = json.loads(run("judge", instruction="worker bee",
                               response="A worker bee lives about six weeks in summer.",
                               context=COLONY))
    assert malformed["score"] < grounded["score"]


# --- the teacher contract ------------------------------------------------------------------


def test_unknown_or_missing_task_and_inputs_raise_non_retryable_errors():
    with pytest.raises(TeacherError) as err:
        run("summarise", passage=COLONY)
    assert err.value.retryable is False
    assert "summarise" in str(err.value)
    assert all(task in str(err.value) for task in TASKS)
    with pytest.raises(TeacherError) as err:
        run(None)
    assert err.value.retryable is False
    with pytest.raises(TeacherError) as err:
        run("judge", instruction="What is propolis?")
    assert err.value.retryable is False
    assert "response" in str(err.value) and "context" in str(err.value)
    with pytest.raises(TeacherError):
        run("qa_pairs", passage=COLONY, n="several")


def test_every_task_answers_and_reports_model_and_token_counts():
    inputs = {"passage": COLONY, "n": 2, "response": CLEAN, "instruction": "What is propolis?",
              "question": "What is propolis?", "context": COLONY, "topic": "bees"}
    teacher = extractive.ExtractiveTeacher()
    for task, keys in TASKS.items():
        if task in teacher.refuses:  # a refusal, named (see the test below)
            with pytest.raises(TeacherError, match="does not rate educational value"):
                asyncio.run(teacher.complete([], params=GenerationParams(
                    task=task, inputs={k: inputs[k] for k in keys})))
            continue
        completion = asyncio.run(teacher.complete(
            [ChatMessage(role="user", content="one two three")],
            params=GenerationParams(task=task, inputs={k: inputs[k] for k in keys})))
        assert completion.text.strip(), task
        assert completion.model == "extractive-v2"
        assert completion.prompt_tokens == 3
        assert completion.completion_tokens == len(completion.text.split())


def test_plugin_loads_through_the_real_entry_point():
    eps = {ep.name: ep for ep in entry_points(group=PROJECT)}
    assert "extractive-teacher" in eps
    module = eps["extractive-teacher"].load()
    assert module is extractive
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(module, name="extractive-teacher")
    pm.check_pending()
    registered: list[object] = []
    pm.hook.register_teachers(register=registered.append)
    assert len(registered) == 1
    factory = registered[0]
    assert isinstance(factory, TeacherFactory)
    assert factory.kind == "extractive"
    teacher = factory.create({"model": "ignored"})
    assert isinstance(teacher, Teacher)
    assert (teacher.kind, teacher.model) == ("extractive", "extractive-v2")
