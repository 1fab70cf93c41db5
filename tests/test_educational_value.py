"""The ``educational-value`` filter (phi-1's textbook-quality classifier) on a stream of
honeybee records: a real OpenAI-protocol teacher (a local server whose model rates by a
stated rule) annotates the first ``sample_size`` records, a random forest on real
all-MiniLM-L6-v2 embeddings is trained and stored in a real ``LocalStore``, and predicts
the rest without teacher calls; another replica reuses the stored classifier, and the
same annotations give the same content-addressed artifact."""

from __future__ import annotations

import asyncio
import json
import random
import re
from typing import Any

import pytest

from syllabus.contracts import Filter, PluginRef, QARecord, TeacherRef, sha256_hex
from syllabus.plugins.filters.educational_value import (
    Annotation,
    EducationalValueFilter,
    annotation_key,
    annotation_prefix,
    classifier_prefix,
    classifier_sha,
    latest_key,
)
from syllabus.plugins.teachers.openai import OpenAITeacherFactory
from syllabus.services.runtime import (
    LocalStore,
    ManagedTeacher,
    TeacherSettings,
    default_embedder,
)

from .openai_server import ScriptedOpenAI, text

FACTS = [
    ("How many eggs can a honeybee queen lay in a day?",
     "In early summer a honeybee queen can lay up to about 2,000 eggs a day, each in its own "
     "cell of the comb."),
    ("What is the role of drones in a honeybee colony?",
     "Drones are the male bees. They do not forage or sting; their only task is to mate with "
     "a young queen from another colony, after which they die."),
    ("How do honeybees make wax?",
     "Young worker bees secrete wax flakes from eight glands on the underside of their "
     "abdomen, then chew and shape the flakes into the hexagonal cells of the comb."),
    ("What is the waggle dance?",
     "The waggle dance is how a forager tells her nestmates where food is: the angle of the "
     "waggle run relative to vertical gives the direction relative to the sun, and its "
     "duration gives the distance."),
    ("How do bees turn nectar into honey?",
     "Foragers add the enzyme invertase to nectar, which splits sucrose into glucose and "
     "fructose; house bees then fan their wings to evaporate water until the honey is about "
     "18% water, and cap the cell with wax."),
    ("What is royal jelly?",
     "Royal jelly is a protein-rich secretion from the glands of young workers. All larvae "
     "get it for their first days, but only larvae destined to become queens are fed it "
     "throughout their development."),
    ("How long does a worker bee live?",
     "A worker born in summer lives about five to six weeks: she works inside the hive first "
     "and forages in her last weeks. Workers born in autumn can live several months."),
    ("Why do honeybees collect pollen?",
     "Pollen is the colony's source of protein and fat. Nurse bees eat it to produce the "
     "brood food that they feed to the larvae."),
    ("How do bees keep the brood nest warm?",
     "Worker bees shiver their flight muscles to produce heat, keeping the brood nest at "
     "about 34-35 degrees Celsius even when the air outside is cold."),
    ("What is propolis used for?",
     "Propolis is a resin that bees collect from tree buds. They use it to seal gaps in the "
     "hive and coat its walls; it has antimicrobial properties that protect the colony."),
    ("How does a colony make a new queen?",
     "When the queen dies or the colony prepares to swarm, workers build larger queen cells "
     "and feed the young larvae in them only royal jelly; 16 days later a new queen emerges."),
    ("How many eyes does a honeybee have?",
     "A honeybee has five eyes: two large compound eyes that see shapes and colours, "
     "including ultraviolet, and three simple eyes on top of the head that sense light."),
    ("What is swarming?",
     "Swarming is how honeybee colonies reproduce: the old queen leaves with about half of "
     "the workers to found a new colony, while a new queen takes over the original hive."),
    ("How do bees communicate with pheromones?",
     "The queen releases a pheromone that keeps workers from raising new queens and holds "
     "the colony together; a worker that stings releases an alarm pheromone."),
    ("Why does a worker bee die after stinging a mammal?",
     "The worker's stinger is barbed. It catches in the elastic skin of a mammal, and when "
     "the bee pulls away the stinger, venom sac and part of her abdomen tear off."),
    ("What are the stages of a honeybee's development?",
     "A honeybee develops by complete metamorphosis: egg, larva, pupa in a capped cell, and "
     "adult. A worker takes 21 days from egg to adult, a drone 24, a queen 16."),
    ("How far do forager bees fly?",
     "Foragers usually collect nectar and pollen within about 3 km of the hive, but can fly "
     "more than 6 km when food is scarce."),
    ("How do bees see colour?",
     "Bees see ultraviolet, blue and green light but not red. Many flowers have ultraviolet "
     "patterns, called nectar guides, that lead bees to the nectar."),
    ("What do guard bees do?",
     "Guard bees stand at the hive entrance and check incoming bees by their smell; workers "
     "from other colonies, wasps and robbers are attacked."),
    ("How do bees cool the hive in summer?",
     "Workers spread droplets of water over the comb and fan their wings at the entrance, so "
     "that evaporation cools the hive."),
]

PROMOS = [
    ("Where can I buy honey?",
     "Visit our online shop today and order our award-winning wildflower honey! Free "
     "shipping on all orders over $30."),
    ("Why should I choose Golden Meadow honey?",
     "Because it's simply the best! Our customers love it, and you will too. Order now and "
     "get 20% off your first jar."),
    ("What is the Hive Club?",
     "Join the Hive Club, our exclusive membership for honey lovers! Members get special "
     "discounts, early access to new flavours and a free tote bag."),
    ("Tell me about your beeswax candles.",
     "Our hand-poured candles bring a cosy glow to every home. They make the perfect gift, "
     "so add them to your cart before they sell out!"),
    ("How do I subscribe to the newsletter?",
     "Sign up for our newsletter and never miss a deal! Enter your email at the bottom of the "
     "page and click Subscribe."),
    ("Are bees amazing?",
     "Bees are absolutely amazing and magical! We just love them so much, and we know you do "
     "too. Follow us on Instagram for more buzz-worthy content!"),
    ("What's on sale this week?",
     "This week only: buy two jars of our creamy spring honey and get the third free! Hurry, "
     "the offer ends Sunday."),
    ("Why visit the Bee Museum gift shop?",
     "Our gift shop is full of delightful treasures for the whole family, from plush "
     "bumblebees to honey fudge. Don't leave without a souvenir!"),
    ("Do you ship internationally?",
     "Yes! We ship our delicious honey products worldwide. Check out at our store and your "
     "order will be on its way within two business days."),
    ("What do customers say about your honey?",
     "\"Best honey I've ever tasted!\" says Sarah, five stars. Thousands of happy customers "
     "can't be wrong. Treat yourself today."),
    ("Can I give honey as a gift?",
     "Absolutely! Our beautiful gift boxes are the sweetest way to say thank you. "
     "Personalise your message at checkout."),
    ("What is your return policy?",
     "We want you to be 100% happy with your purchase. If you're not satisfied, contact our "
     "friendly customer service team within 30 days for a full refund."),
    ("Why is your honey so special?",
     "Every jar is lovingly crafted with passion and care. It's pure happiness in a jar, so "
     "taste the difference and order yours!"),
    ("How can I support your farm?",
     "Shop our store, leave us a review and share our page with your friends. Every purchase "
     "helps our small family business grow!"),
    ("Is there a discount code?",
     "Use code BUZZ10 at checkout to save 10% on everything in the store. Limited time only!"),
    ("What is the best honey for breakfast?",
     "Our bestselling breakfast blend is the perfect start to any morning. Order a jar today "
     "and make every breakfast magical!"),
    ("Do you have a loyalty programme?",
     "Yes! Earn sweet points with every order and redeem them for free jars, candles and "
     "exclusive merchandise."),
    ("What events do you host?",
     "Join us for our fabulous summer honey festival with music, tastings and fun for all "
     "ages! Tickets are selling fast, so book now."),
    ("Why should I follow your blog?",
     "Our blog is packed with inspiring stories, gorgeous photos and exclusive offers. "
     "Subscribe today and join our buzzing community!"),
    ("What is in the honey gift hamper?",
     "Our luxury hamper includes three jars of honey, a wooden dipper and a scented candle, "
     "beautifully wrapped. The perfect present: order yours now!"),
]

BIOLOGY = re.compile(r"\b(queens?|workers?|drones?|larvae?|pollen|nectar|wax|comb|colon(y|ies)"
                     r"|foragers?|brood|pheromones?|propolis|stinger|abdomen|eyes|hive)\b",
                     re.IGNORECASE)
PROMOTION = re.compile(r"\b(shop|order|buy|discounts?|subscribe|sign up|offers?|sale|free|"
                       r"checkout|cart|store|gift|customers?|purchase|follow us|join|book now|"
                       r"perfect|best|amazing|love)\b", re.IGNORECASE)
RESPONSE = re.compile(r"\nResponse:\n(.*)\n\nAnswer with JSON only", re.DOTALL)
MODEL = "rater"
EV = EducationalValueFilter


def rule(response: str) -> int:
    """The scripted model's rating: promotion 1, bee biology 5, anything else 2."""
    if PROMOTION.search(response):
        return 1
    return 5 if BIOLOGY.search(response) else 2


def rater(request: dict[str, Any]) -> str:
    """The default responder: rates the response in the prompt by ``rule``."""
    prompt = request["messages"][0]["content"]
    response = RESPONSE.search(prompt).group(1)
    score = rule(response)
    reasoning = ("It explains bee biology a student can learn from." if score == 5 else
                 "It is promotional text with nothing to learn.")
    return json.dumps({"score": score, "reasoning": reasoning})


def record(instruction: str, response: str, collection: str = "bees") -> QARecord:
    return QARecord(record_id=sha256_hex(instruction + "\x1e" + response),
                    collection=collection, instruction=instruction, response=response,
                    chunk_id="c" * 64, technique=PluginRef(name="qa-pairs", version="1"),
                    teacher=TeacherRef(kind="extractive", model="rules"))


def stream() -> list[QARecord]:
    """40 records, a fact and a promotion in turn: each half holds 10 of each."""
    return [record(*pair) for f, p in zip(FACTS, PROMOS, strict=True) for pair in (f, p)]


def managed(server: ScriptedOpenAI) -> ManagedTeacher:
    inner = OpenAITeacherFactory().create({"url": server.url, "model": MODEL})
    return ManagedTeacher(inner, settings=TeacherSettings(kind="openai", model=MODEL,
                                                          cache=False, max_retries=0),
                          store=None)


def options(store: LocalStore, **extra: Any) -> dict[str, Any]:
    return {"store": store, "embedder": default_embedder(), "sample_size": 20, **extra}


def test_the_rule_splits_the_stream_as_intended():
    assert [rule(r) for _, r in FACTS] == [5] * 20
    assert [rule(r) for _, r in PROMOS] == [1] * 20
    assert isinstance(EV(), Filter)


async def test_annotate_train_predict_and_a_second_replica(openai_server, tmp_path):
    openai_server.default = rater
    store = LocalStore(tmp_path / "store")
    teacher = managed(openai_server)
    ev = EV()
    records = stream()
    try:
        decisions = [await ev.judge(r, context=None, teacher=teacher, options=options(store))
                     for r in records]
    finally:
        await teacher.aclose()

    # the first 20 were rated by the teacher, one call each, and stored as annotations
    assert len(openai_server.requests) == 20
    prompt = openai_server.requests[0].json["messages"][0]["content"]
    assert "educational value" in prompt and "student whose goal is to learn" in prompt
    assert records[0].response in prompt
    assert ev.stats["annotated"] == 20 and ev.stats["trained"] == 1
    keys = sorted(store.list(annotation_prefix("bees")))
    assert keys == sorted(annotation_key("bees", r.record_id) for r in records[:20])
    stored = Annotation.model_validate_json(store.get(annotation_key("bees",
                                                                     records[0].record_id)))
    assert stored.score == 5 and stored.teacher == f"openai:{MODEL}"
    assert stored.text_hash == sha256_hex(f"{records[0].instruction}\n\n{records[0].response}")
    for r, d in zip(records[:20], decisions[:20], strict=True):
        assert d.filter == "educational-value" and d.details["method"] == "teacher"
        assert d.kept == (rule(r.response) >= 3) and d.score == rule(r.response)
        assert d.reason.startswith("teacher-rated educational value")
    kept = next(d for d in decisions[:20] if d.kept)
    dropped = next(d for d in decisions[:20] if not d.kept)
    assert "5 >= 3: It explains bee biology" in kept.reason
    assert "1 < 3: It is promotional text" in dropped.reason

    # a classifier, its meta with the held-out agreement, and the pointer
    pointer = json.loads(store.get(latest_key("bees")))
    prefix = f"{classifier_prefix('bees')}{pointer['sha']}/"
    assert pointer["model"] == f"{prefix}model.pkl" and store.exists(pointer["model"])
    meta = json.loads(store.get(f"{prefix}meta.json"))
    assert meta["sample_size"] == 20 and meta["threshold"] == 3
    assert meta["labels"] == {"educational": 10, "not_educational": 10}
    # 4 held-out annotations: the agreement is a count of them, and the rule-rated sample
    # is learnable (chance would be 0.5)
    heldout = meta["heldout"]
    assert heldout["n"] == 4 and heldout["accuracy"] * 4 == round(heldout["accuracy"] * 4)
    assert heldout["accuracy"] >= 0.75, heldout
    assert meta["embedder"] == {"model": "sentence-transformers/all-MiniLM-L6-v2",
                                "dimension": 384}
    assert meta["record_ids"] == sorted(r.record_id for r in records[:20])

    # the next 20 were predicted, without a teacher call, and agree with the rule
    tail = decisions[20:]
    assert ev.stats["predicted"] == 20
    assert all(d.details["method"] == "classifier" for d in tail)
    assert all(d.details["classifier"] == pointer["model"] for d in tail)
    assert all(d.details["heldout"] == meta["heldout"] for d in tail)
    assert all(0.0 <= d.score <= 1.0 and d.threshold == 0.5 for d in tail)
    agree = sum(d.kept == (rule(r.response) >= 3) for r, d in zip(records[20:], tail,
                                                                 strict=True))
    assert agree >= 16, [(r.response[:40], d.score) for r, d in zip(records[20:], tail, strict=True)]
    kept = next(d for d in tail if d.kept)
    dropped = next(d for d in tail if not d.kept)
    assert re.match(r"classifier P\(educational\) [01]\.\d\d >= 0\.5 \(random forest on 20 "
                    r"teacher annotations, held-out accuracy [01]\.\d\d\)$", kept.reason)
    assert re.match(r"classifier P\(educational\) 0\.\d\d < 0\.5", dropped.reason)

    # another replica: loads the stored classifier, trains nothing, needs no teacher, and
    # decides annotated records from their annotations
    replica = EV()
    again = [await replica.judge(r, context=None, teacher=None, options=options(store))
             for r in records]
    assert len(openai_server.requests) == 20
    assert replica.stats["trained"] == 0 and replica.stats["adopted"] == 0
    assert replica.stats["loaded"] == 1 and replica.stats["from_annotation"] == 20
    assert [d.kept for d in again] == [d.kept for d in decisions]
    assert all(d.details["from_store"] for d in again[:20])
    assert [d.score for d in again[20:]] == [d.score for d in tail]


async def test_the_same_annotations_give_the_same_artifact(openai_server, tmp_path):
    openai_server.default = rater
    first = LocalStore(tmp_path / "a")
    teacher = managed(openai_server)
    records = stream()
    try:
        for r in records[:20]:
            await EV().judge(r, context=None, teacher=teacher, options=options(first))
    finally:
        await teacher.aclose()
    pointer = json.loads(first.get(latest_key("bees")))

    # a replica with its own store that holds the same annotations, written in another
    # order, trains when a record arrives and gets the same key and the same meta
    second = LocalStore(tmp_path / "b")
    keys = list(first.list(annotation_prefix("bees")))
    random.Random(7).shuffle(keys)
    for key in keys:
        second.put(key, first.get(key))
    replica = EV()
    decision = await replica.judge(records[20], context=None, teacher=None,
                                   options=options(second))
    assert replica.stats["trained"] == 1 and decision.details["method"] == "classifier"
    assert json.loads(second.get(latest_key("bees"))) == pointer
    meta_key = f"{classifier_prefix('bees')}{pointer['sha']}/meta.json"
    assert json.loads(second.get(meta_key)) == json.loads(first.get(meta_key))

    # and the key is a function of the annotation set, not of its order
    annotations = [Annotation.model_validate_json(first.get(k)) for k in keys]
    args = {"threshold": 3, "embedder_model": default_embedder().model, "n_estimators": 100,
            "random_state": 0, "holdout": 0.2}
    assert classifier_sha(annotations, **args) == pointer["sha"]
    assert classifier_sha(list(reversed(annotations)), **args) == pointer["sha"]
    assert classifier_sha(annotations, **{**args, "threshold": 4}) != pointer["sha"]
    changed = [annotations[0].model_copy(update={"score": 2}), *annotations[1:]]
    assert classifier_sha(changed, **args) != pointer["sha"]

    # a third replica sharing the store, with the classifier gone but the annotations
    # there, adopts the artifact another replica wrote instead of training again
    (tmp_path / "b" / latest_key("bees")).unlink()
    third = EV()
    await third.judge(records[21], context=None, teacher=None, options=options(second))
    assert third.stats["adopted"] == 1 and third.stats["trained"] == 0
    assert json.loads(second.get(latest_key("bees"))) == pointer

    # a torn artifact (model.pkl no longer matches meta.json) is never unpickled: the next
    # replica trains again and rewrites it
    second.put(pointer["model"], b"not the forest that meta.json describes")
    fourth = EV()
    decision = await fourth.judge(records[22], context=None, teacher=None,
                                  options=options(second))
    assert fourth.stats["trained"] == 1 and decision.details["method"] == "classifier"
    meta = json.loads(second.get(meta_key))
    assert sha256_hex(second.get(pointer["model"])) == meta["model_sha256"]


async def test_concurrent_records_send_exactly_the_sample_to_the_teacher(openai_server,
                                                                          tmp_path):
    openai_server.default = rater
    openai_server.latency = 0.05
    store = LocalStore(tmp_path / "store")
    teacher = managed(openai_server)
    ev = EV()
    records = stream()[:24]
    try:
        decisions = await asyncio.gather(*(
            ev.judge(r, context=None, teacher=teacher, options=options(store, sample_size=10))
            for r in records))
    finally:
        await teacher.aclose()
    assert len(openai_server.requests) == 10
    assert openai_server.peak_in_flight > 1  # the annotations did run concurrently
    methods = [d.details["method"] for d in decisions]
    assert methods.count("teacher") == 10 and methods.count("classifier") == 14
    assert ev.stats["trained"] == 1
    assert len(list(store.list(annotation_prefix("bees")))) == 10
    models = [k for k in store.list(classifier_prefix("bees")) if k.endswith("model.pkl")]
    assert len(models) == 1


async def test_misconfiguration_and_unusable_annotations(openai_server, tmp_path):
    store = LocalStore(tmp_path / "store")
    r = record(*FACTS[0])
    with pytest.raises(ValueError, match=r"options\['store'\]"):
        await EV().judge(r, context=None, teacher=None,
                         options={"embedder": default_embedder()})
    with pytest.raises(ValueError, match=r"options\['embedder'\]"):
        await EV().judge(r, context=None, teacher=None, options={"store": store})
    with pytest.raises(ValueError, match="sample_sise"):
        await EV().judge(r, context=None, teacher=None,
                         options={**options(store), "sample_sise": 10})
    with pytest.raises(ValueError, match="needs a teacher to annotate the first 20"):
        await EV().judge(r, context=None, teacher=None, options=options(store))
    # phi-1's label is a model's judgement: the extractive teacher refuses it, by name,
    # and nothing is annotated with another rule
    from syllabus.plugins.teachers.extractive import ExtractiveTeacher
    with pytest.raises(ValueError, match="the extractive teacher refuses the task"):
        await EV().judge(r, context=None, teacher=ExtractiveTeacher(), options=options(store))
    assert not list(store.list("annotations/"))

    # an answer that cannot be parsed, even after a retry: dropped, raw output kept, and not
    # counted as an annotation; "keep" keeps it
    openai_server.script(text("It is quite educational."), text("Score: four"),
                         text("no idea"), text("still no idea"))
    teacher = managed(openai_server)
    try:
        dropped = await EV().judge(r, context=None, teacher=teacher, options=options(store))
        kept = await EV().judge(r, context=None, teacher=teacher,
                                options=options(store, on_failure="keep"))
    finally:
        await teacher.aclose()
    assert not dropped.kept and dropped.details["raw_output"] == "Score: four"
    assert "could not be used" in dropped.reason and "dropped as on_failure says" in dropped.reason
    assert kept.kept and kept.details["raw_output"] == "still no idea"
    assert list(store.list(annotation_prefix("bees"))) == []
    assert len(openai_server.requests) == 4
