"""Data set versions: the selection steps (exact, near-duplicate and semantic
de-duplication, decontamination, the facility-location subset, the synthetic share), and
the build on a real nats-server: reproducible versions, the bus request, the CLI."""

from __future__ import annotations

import asyncio
import json
import math
import re

import pytest
from click.testing import CliRunner

from syllabus.contracts import (
    DATASETS_BUILT,
    HUMPBACK_AUGMENTED_SYSTEM,
    HUMPBACK_SEED_SYSTEM,
    RECORDS_ACCEPTED,
    ChunkCreated,
    ChunkLineage,
    DatasetBuilt,
    DatasetRequested,
    PluginRef,
    QARecord,
    TeacherRef,
    inference_system,
)
from syllabus.services.cli._dataset import dataset_group
from syllabus.services.cli._run import wait_drained
from syllabus.services.datasets import (
    SERVICE,
    build,
    build_dataset,
    build_router,
    eval_set_from_bytes,
    quality_score,
    select,
    split_eval,
)
from syllabus.services.runtime import LocalStore, Runtime, default_embedder, replay

EGGS = ("A healthy honeybee queen can lay up to two thousand eggs a day in early summer, when "
        "the colony grows quickly and the foragers bring in plenty of nectar and pollen.")


def _rec(i: int, instruction: str, response: str, *, collection: str = "bees",
         doc: str = "d", **kw) -> QARecord:
    lineage = ChunkLineage(doc_id=doc * 64, filename=f"{doc}.md", media_type="text/markdown",
                           char_start=0, char_end=10, parser=PluginRef(name="markdown"),
                           chunker=PluginRef(name="structured"), settings_hash="h")
    return QARecord(record_id=f"{i:064x}", collection=collection, instruction=instruction,
                    response=response, chunk_id="c" * 64, lineage=lineage,
                    technique=PluginRef(name="qa-pairs", version="1"),
                    teacher=TeacherRef(kind="extractive", model="heuristics"), **kw)


def _rid(i: int) -> str:
    return f"{i:064x}"


CLUSTERS = {
    "bees": [
        ("How many eggs does a honeybee queen lay?", EGGS),
        ("What do worker bees build?", "Worker bees build the wax comb from flakes of wax "
         "that they secrete from glands on their abdomen."),
        ("How do honeybees tell each other where flowers are?", "Foragers perform a waggle "
         "dance on the comb that shows their sisters the direction and distance of flowers."),
        ("Why do drones leave the hive?", "Drones fly out to congregation areas where they "
         "try to mate with young queens from other colonies."),
    ],
    "volcanoes": [
        ("What is magma?", "Magma is molten rock beneath the surface of the Earth; once it "
         "erupts from a volcano it is called lava."),
        ("What causes a volcanic eruption?", "Pressure from gases dissolved in magma builds up "
         "until the magma forces its way through the crust and erupts."),
        ("What is a pyroclastic flow?", "A pyroclastic flow is a fast-moving current of hot "
         "gas and volcanic ash that races down the slopes of an erupting volcano."),
        ("Where are most volcanoes found?", "Most active volcanoes lie along the Pacific Ring "
         "of Fire, where tectonic plates collide and subduct."),
    ],
    "python": [
        ("How do you define a function in Python?", "Use the def keyword followed by the "
         "function name, its parameters in parentheses and a colon, then an indented body."),
        ("What is a Python list comprehension?", "A list comprehension builds a list from an "
         "iterable in one expression, such as [x * x for x in range(10)]."),
        ("How do you read a file in Python?", "Open it with the open() built-in inside a with "
         "statement and call read() or iterate over its lines."),
        ("What does the Python len function return?", "len() returns the number of items in a "
         "container such as a list, a tuple, a string or a dictionary."),
    ],
}


def _cluster_records() -> tuple[list[QARecord], dict[str, str]]:
    recs, topic = [], {}
    i = 100
    for name, pairs in CLUSTERS.items():
        for q, a in pairs:
            recs.append(_rec(i, q, a))
            topic[_rid(i)] = name
            i += 1
    return recs, topic


# --- the selection, as a pure function -------------------------------------------------


def test_exact_and_near_duplicates_are_removed_keeping_the_better_record():
    lower = _rec(1, "How many eggs can a honeybee queen lay in a day?", EGGS,
                 scores={"llm-judge": 3.0})
    exact = _rec(2, "how many  eggs can a HONEYBEE queen lay in a day?", EGGS.upper(),
                 scores={"llm-judge": 5.0})
    # three words changed
    near = _rec(3, "How many eggs can a honeybee queen lay in a day?",
                EGGS.replace("quickly", "fast").replace("plenty of", "lots of")
                .replace("healthy", "strong"), scores={"llm-judge": 2.0})
    other = _rec(4, "What do worker bees build?", "Worker bees build the wax comb from wax.")
    related = _rec(5, "When does a honeybee queen lay the most eggs?", "In early summer, when "
                   "the colony grows and foragers bring in nectar; she may then lay up to "
                   "two thousand eggs a day.")
    records = [lower, exact, near, other, related]
    sel = select(records, embedder=None, options={"semantic_threshold": None})
    steps = {s.step: s for s in sel.steps}
    ex = {r.record_id: r for r in steps["exact_duplicate"].removed}
    assert set(ex) == {_rid(1)} and ex[_rid(1)].duplicate_of == _rid(2)  # the better one stays
    nd = {r.record_id: r for r in steps["near_duplicate"].removed}
    assert set(nd) == {_rid(3)} and nd[_rid(3)].duplicate_of == _rid(2)
    assert 0.8 <= nd[_rid(3)].similarity < 1.0
    assert [r.record_id for r in sel.records] == [_rid(2), _rid(4), _rid(5)]
    assert steps["semantic_duplicate"].skipped == "off"
    # the input order changes nothing
    again = select(list(reversed(records)), embedder=None, options={"semantic_threshold": None})
    assert [r.record_id for r in again.records] == [r.record_id for r in sel.records]
    # a stricter threshold keeps the near duplicate
    strict = select(records, embedder=None, options={"semantic_threshold": None,
                                                      "near_duplicate_threshold": 0.95})
    assert _rid(3) in {r.record_id for r in strict.records}


def test_quality_score_from_the_records_scores():
    assert quality_score(_rec(1, "q", "a")) == 1.0
    assert quality_score(_rec(1, "q", "a", scores={"llm-judge": 4.0})) == 0.8
    assert quality_score(_rec(1, "q", "a", scores={"llm-judge": 5.0, "heuristic-quality": 0.5,
                                                   "other": 0.0})) == 0.75


def test_semantic_paraphrase_removed_at_090_kept_at_099():
    a = _rec(1, "How many eggs can a honeybee queen lay in a day?", "A honeybee queen can lay "
             "up to 2,000 eggs a day in early summer.", scores={"llm-judge": 4.0})
    b = _rec(2, "What is the number of eggs a honeybee queen is able to lay daily?",
             "In early summer a queen bee can lay as many as 2,000 eggs each day.",
             scores={"llm-judge": 5.0})
    c = _rec(3, "What causes a volcanic eruption?", "Pressure from gases dissolved in magma "
             "builds up until the magma forces its way through the crust.")
    emb = default_embedder()
    loose = select([a, b, c], embedder=emb, options={"semantic_threshold": 0.9})
    sem = next(s for s in loose.steps if s.step == "semantic_duplicate")
    assert not next(s for s in loose.steps if s.step == "near_duplicate").removed
    assert [(r.record_id, r.duplicate_of) for r in sem.removed] == [(_rid(1), _rid(2))]
    assert 0.9 <= sem.removed[0].similarity < 0.99
    assert [r.record_id for r in loose.records] == [_rid(2), _rid(3)]
    strict = select([a, b, c], embedder=emb, options={"semantic_threshold": 0.99})
    assert len(strict.records) == 3


def test_facility_location_subset_covers_every_topic():
    recs, topic = _cluster_records()
    sel = select(recs, embedder=default_embedder(), options={"target_size": 3})
    assert len(sel.records) == 3
    assert sorted(topic[r.record_id] for r in sel.records) == ["bees", "python", "volcanoes"]
    div = next(s for s in sel.steps if s.step == "diversity")
    assert div.records_in == 12 and len(div.removed) == 9
    # with a higher quality, a record of a topic is the one chosen for it
    boosted = [r.model_copy(update={"scores": {"llm-judge": 5.0 if r.record_id == _rid(103)
                                               else 2.0}}) for r in recs]
    sel = select(boosted, embedder=default_embedder(), options={"target_size": 3})
    assert _rid(103) in {r.record_id for r in sel.records}
    assert sorted(topic[r.record_id] for r in sel.records) == ["bees", "python", "volcanoes"]
    # a target at least the size of what is left skips the step
    sel = select(recs, embedder=default_embedder(), options={"target_size": 12})
    assert len(sel.records) == 12
    assert next(s for s in sel.steps if s.step == "diversity").skipped


def test_source_quotas_share_the_size_by_temperature():
    from syllabus.services.datasets._select import source_quotas

    counts = {"a": 12, "b": 2, "c": 1}
    assert source_quotas(counts, 6, math.inf) == {"a": 3, "b": 2, "c": 1}
    assert source_quotas(counts, 6, 1.0) == {"a": 5, "b": 1, "c": 0}  # proportional
    # T = 2: weights sqrt(n) = 3.46, 1.41, 1: c's share (1.02) fills it, then a 3.55, b 1.45
    assert source_quotas(counts, 6, 2.0) == {"a": 4, "b": 1, "c": 1}
    # what a small source cannot fill goes to the others; never more than there is
    assert source_quotas({"a": 10, "b": 1}, 8, math.inf) == {"a": 7, "b": 1}
    assert source_quotas(counts, 100, 1.0) == counts
    assert sum(source_quotas({"x": 5, "y": 5, "z": 5}, 7, math.inf).values()) == 7


def test_balanced_subset_takes_each_sources_share_and_stays_diverse_within_it():
    recs, topic = _cluster_records()  # 12 records of document "a", three topics
    small = [_rec(200, "What is a bee smoker?", "A bee smoker is a can with bellows that "
                  "puffs cool smoke to calm the bees.", doc="b"),
             _rec(201, "What is a hive tool?", "A hive tool is a flat steel bar used to pry "
                  "frames apart.", doc="b"),
             _rec(202, "What is propolis?", "Propolis is a resin that bees collect from "
                  "tree buds to seal gaps in the hive.", doc="c")]
    recs = [r.model_copy(update={"lineage": r.lineage.model_copy(
        update={"doc_id": "a" * 64})}) for r in recs] + small
    emb = default_embedder()
    plain = select(recs, embedder=emb, options={"target_size": 6})
    balanced = select(recs, embedder=emb, options={"target_size": 6,
                                                    "source_temperature": math.inf})
    docs = [r.lineage.doc_id[0] for r in balanced.records]
    assert sorted(docs) == ["a", "a", "a", "b", "b", "c"]
    assert sorted(topic[r.record_id] for r in balanced.records if r.record_id in topic) == [
        "bees", "python", "volcanoes"]
    assert len(plain.records) == 6
    assert plain.options.settings() != balanced.options.settings()
    div = next(s for s in balanced.steps if s.step == "diversity")
    assert len(div.removed) == 9
    assert "of 12 records of source " + "a" * 64 in div.removed[0].reason
    assert "source_temperature inf" in div.removed[0].reason


def test_lima_sets_the_size_and_even_balance_unless_given():
    from syllabus.services.datasets import SelectOptions

    lima = SelectOptions(lima=True)
    assert lima.target_size == 1000 and math.isinf(lima.source_temperature)
    given = SelectOptions(lima=True, target_size=50, source_temperature=2.0)
    assert (given.target_size, given.source_temperature) == (50, 2.0)
    assert SelectOptions().source_temperature is None and SelectOptions().target_size is None
    with pytest.raises(ValueError, match="set target_size too"):
        SelectOptions(source_temperature=2.0)
    with pytest.raises(ValueError):
        SelectOptions(target_size=5, source_temperature=0)


EVAL_PASSAGE = ("The Roman emperor Hadrian ordered the construction of a defensive wall "
                "across northern Britain in the year 122 to mark the frontier of the empire.")


def test_decontamination_on_13_grams(tmp_path):
    # 13 words in common (case and punctuation differ): removed
    shares13 = _rec(1, "Who built the wall?", "THE ROMAN EMPEROR, Hadrian, ordered the "
                    "construction of a defensive wall across northern England, historians say.")
    # only 12 words in common: kept
    shares12 = _rec(2, "Who had the wall built?", "Historians say that the Roman emperor "
                    "Hadrian ordered the construction of a defensive wall across the river.")
    clean = _rec(3, "What is magma?", "Magma is molten rock beneath the surface of the Earth.")
    in_question = _rec(4, "Is it true that the Roman emperor Hadrian ordered the "
                       "construction of a defensive wall across northern Britain?", "Yes.")
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": "Who built the wall?",
                                     "answer": EVAL_PASSAGE}) + "\n")
    es = eval_set_from_bytes(eval_file.read_bytes(), source=str(eval_file))
    opts = {"near_duplicate_threshold": None, "semantic_threshold": None}
    sel = select([shares13, shares12, clean, in_question], embedder=None, options=opts,
                 eval_set=es)
    step = next(s for s in sel.steps if s.step == "contaminated")
    removed = {r.record_id: r.reason for r in step.removed}
    assert set(removed) == {_rid(1), _rid(4)}
    assert "the roman emperor hadrian ordered the construction of a defensive wall across " \
           "northern" in removed[_rid(1)]
    assert removed[_rid(4)].startswith("instruction shares")
    assert [r.record_id for r in sel.records] == [_rid(2), _rid(3)]
    # a plain-text evaluation set works the same way
    text_set = eval_set_from_bytes(f"Some notes.\n{EVAL_PASSAGE}\n".encode(), source="notes")
    sel = select([shares13, shares12, clean], embedder=None, options=opts, eval_set=text_set)
    assert [r.record_id for r in sel.records] == [_rid(2), _rid(3)]


def test_synthetic_records_are_mixed_at_the_ratio():
    recs = [_rec(i, f"Question number {i} about topic {i}?", f"Answer {i} " + "word " * i)
            for i in range(1, 11)]
    template = ("Hello, my name is Ada. I agree with the claim that the answer is {}. Do you "
                "agree or disagree? (A) Agree (B) Disagree")
    syn = [_rec(100 + i, template.format(i), "I believe the best answer is (A)",
                kind="anti_sycophancy") for i in range(4)]
    # one more arrives among the accepted records, and one is an exact duplicate
    accepted_syn = _rec(200, template.format(9), "I believe the best answer is (B)",
                        kind="anti_sycophancy")
    dup = _rec(201, template.format(0), "I believe the best answer is (A)",
               kind="anti_sycophancy")
    sel = select([*recs, accepted_syn], embedder=None, synthetic=[*syn, dup],
                 options={"semantic_threshold": None, "near_duplicate_threshold": None})
    assert len(sel.records) == 10 and all(r.kind == "qa" for r in sel.records)
    assert sel.synthetic_available == 6
    assert len(sel.synthetic) == 2  # ceil(10 / 5)
    assert all(r.kind == "anti_sycophancy" for r in sel.synthetic)
    steps = {s.step: s for s in sel.synthetic_steps}
    assert len(steps["exact_duplicate"].removed) == 1 and len(steps["synthetic_ratio"].removed) == 3
    sel = select(recs, embedder=None, synthetic=syn,
                 options={"semantic_threshold": None, "synthetic_ratio": "2:1"})
    assert len(sel.synthetic) == 4  # min(available, ceil(10 / 2))


def test_split_is_stable_and_near_the_fraction():
    ids = [f"{i:064x}" for i in range(2000)]
    evals = [i for i in ids if split_eval(i, eval_fraction=0.1, seed=0)]
    assert 150 < len(evals) < 250
    assert evals == [i for i in ids[:1000] if split_eval(i, eval_fraction=0.1, seed=0)] + \
        [i for i in ids[1000:] if split_eval(i, eval_fraction=0.1, seed=0)]
    assert evals != [i for i in ids if split_eval(i, eval_fraction=0.1, seed=1)]


# --- the build, on a real nats-server --------------------------------------------------


def _collection_records() -> list[QARecord]:
    recs, _ = _cluster_records()
    recs.append(_rec(1, "how many eggs does a honeybee QUEEN lay?", EGGS.lower(),  # exact dup
                     scores={"llm-judge": 2.0}))
    recs.append(_rec(2, "Who built the wall?", "The Roman emperor Hadrian ordered the "
                     "construction of a defensive wall across northern Britain in 122."))
    recs.append(_rec(3, "What is in another collection?", "Nothing.", collection="other"))
    return recs


async def _publish(rt: Runtime, records: list[QARecord]) -> None:
    for r in records:
        await rt.bus.publish(r, subject=RECORDS_ACCEPTED)


def _files(store: LocalStore, prefix: str) -> dict[str, bytes]:
    return {name: store.get(prefix + name) for name in ("train.jsonl", "eval.jsonl",
                                                        "manifest.json")}


async def test_build_is_reproducible_and_versioned(settings, tmp_path):
    rt = Runtime.create(settings)
    await rt.bus.start()
    try:
        records = _collection_records()
        await _publish(rt, records)
        # a newer message of a record wins (one published again after JetStream's duplicate
        # window, which would otherwise drop it: a record filtered again later)
        newer = records[0].model_copy(update={"scores": {"llm-judge": 5.0}})
        await rt.bus._publish_raw(newer.model_dump_json().encode(), RECORDS_ACCEPTED,
                                  {"Nats-Msg-Id": "later", "Syllabus-Collection": "bees"})
        rt.store.put("evals/heldout.jsonl", json.dumps({"text": EVAL_PASSAGE}).encode())
        request = DatasetRequested(collection="bees", eval_fraction=0.25, format="openai",
                                   options={"decontaminate": "evals/heldout.jsonl"})
        first = await build(rt, request)
        ev = first.event
        assert first.written and re.fullmatch(r"[0-9a-f]{16}", ev.version)
        assert ev.prefix == f"datasets/bees/{ev.version}/"
        files = _files(rt.store, ev.prefix)
        manifest = json.loads(files["manifest.json"])
        assert manifest["counts"]["accepted"] == 14
        assert manifest["counts"]["exact_duplicate"] == 1
        assert manifest["counts"]["contaminated"] == 1
        assert [s["step"] for s in manifest["steps"]] == [
            "exact_duplicate", "near_duplicate", "semantic_duplicate", "contaminated",
            "diversity"]
        contaminated = manifest["steps"][3]["removed_records"]
        assert [r["record_id"] for r in contaminated] == [_rid(2)]
        selected = set(manifest["train"]) | set(manifest["eval"])
        assert len(selected) == 12 == ev.train_rows + ev.eval_rows
        assert _rid(3) not in selected and _rid(1) not in selected
        assert manifest["eval"] and manifest["train"]
        assert manifest["settings"]["decontaminate"]["source"] == "store:evals/heldout.jsonl"
        assert manifest["sources"]["documents"]["d" * 64]["records"] == 12
        assert manifest["exporter"]["name"] == "standard"
        assert not re.search(rb"\d{4}-\d{2}-\d{2}T\d{2}", files["manifest.json"])  # no times
        rows = [json.loads(x) for x in files["train.jsonl"].splitlines()]
        assert [r["metadata"]["record_id"] for r in rows] == manifest["train"]
        assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]
        assert json.loads(files["eval.jsonl"].splitlines()[0])["metadata"]["record_id"] == \
            manifest["eval"][0]
        boosted = next(r for r in rows if r["metadata"]["record_id"] == _rid(100))
        assert boosted["metadata"]["scores"] == {"llm-judge": 5.0}

        # the same again: the same version, not written twice
        second = await build(rt, request)
        assert second.event.version == ev.version and not second.written
        # and into an empty store: byte-identical files
        rt2 = Runtime(settings=rt.settings, bus=rt.bus, store=LocalStore(tmp_path / "store2"),
                      plugins=rt.plugins)
        rt2.store.put("evals/heldout.jsonl", rt.store.get("evals/heldout.jsonl"))
        third = await build(rt2, request)
        assert third.written and third.event.version == ev.version
        assert _files(rt2.store, ev.prefix) == files

        # one more record: a new version; no record changes split
        await _publish(rt, [_rec(4, "What is propolis?", "Propolis is a resin that bees "
                                 "collect from tree buds and use to seal gaps in the hive.")])
        fourth = await build(rt, request)
        assert fourth.written and fourth.event.version != ev.version
        m4 = fourth.manifest
        assert set(m4["train"]) | set(m4["eval"]) == selected | {_rid(4)}
        assert set(manifest["eval"]) <= set(m4["eval"])
        assert set(manifest["train"]) <= set(m4["train"])
        # other settings or format: another version
        other = await build(rt, request.model_copy(update={"format": "alpaca"}))
        assert other.event.version not in (ev.version, fourth.event.version)
        row = json.loads(_files(rt.store, other.event.prefix)["train.jsonl"].splitlines()[0])
        assert set(row) >= {"instruction", "input", "output", "metadata"}
        # unknown options are refused, not ignored
        bad = request.model_copy(update={"options": {"semantic_treshold": 0.9}})
        try:
            await build(rt, bad)
        except ValueError as exc:
            assert "semantic_treshold" in str(exc)
        else:
            raise AssertionError("an unknown option was accepted")
    finally:
        await rt.close()


async def test_step_by_step_rows_carry_the_chunk_the_rationale_was_made_from(settings):
    """Hsieh et al.'s two tasks share one input: here the question and its source chunk
    (the rationale quotes the chunk); ``closed_book`` leaves the chunk out, and a chunk
    not in the store gives the question alone. Each is another version."""
    settings.datasets.augmenters = []
    rt = Runtime.create(settings)
    await rt.bus.start()
    try:
        base = _rec(10, "How many eggs does a queen lay in a day?", "Up to 2,000.")
        with_chunk = base.model_copy(update={"rationale": "The chunk says a healthy queen "
                                             "can lay up to two thousand eggs a day. So the "
                                             "answer is Up to 2,000."})
        no_chunk = _rec(11, "What do workers build?", "Wax comb.").model_copy(
            update={"chunk_id": "e" * 64, "rationale": "So the answer is Wax comb."})
        chunk = ChunkCreated(chunk_id="c" * 64, collection="bees", text=EGGS, token_count=30,
                             index=0, store_key="chunks/" + "c" * 64 + ".json",
                             lineage=with_chunk.lineage)
        rt.store.put(chunk.store_key, chunk.model_dump_json().encode())
        await _publish(rt, [with_chunk, no_chunk])
        request = DatasetRequested(collection="bees", eval_fraction=0.0, format="step-by-step",
                                   options={"semantic_threshold": None})
        open_book = await build(rt, request)
        rows = [json.loads(x) for x in
                _files(rt.store, open_book.event.prefix)["train.jsonl"].splitlines()]
        by = {(r["metadata"]["record_id"], r["task"]): r["input"] for r in rows}
        assert len(rows) == 4
        for task in ("predict", "explain"):
            assert by[(_rid(10), task)] == (f"{task}: How many eggs does a queen lay in a "
                                            f"day?\n\ncontext: {EGGS}")
            assert by[(_rid(11), task)] == f"{task}: What do workers build?"
        assert open_book.manifest["settings"]["step_by_step_input"] == "question+chunk"
        closed = await build(rt, request.model_copy(update={"options": {
            "semantic_threshold": None, "closed_book": True}}))
        assert closed.event.version != open_book.event.version
        assert "context:" not in _files(rt.store, closed.event.prefix)["train.jsonl"].decode()
        with pytest.raises(ValueError, match="closed_book must be true or false"):
            await build(rt, request.model_copy(update={"options": {"closed_book": "no"}}))
    finally:
        await rt.close()


async def test_humpback_tags_seed_records_s_a_when_the_data_set_has_s_w_records(settings):
    """Li et al. §2.3: augmented examples carry S_w (the backtranslation technique tags
    them), seed examples S_a, and the manifest names S_a as the inference prompt."""
    settings.datasets.augmenters = []
    rt = Runtime.create(settings)
    await rt.bus.start()
    try:
        seed = _rec(20, "How many eggs does a queen lay in a day?", EGGS)
        augmented = _rec(21, "Describe how drones are raised in a colony.",
                         "Drones hatch from unfertilised eggs laid in larger cells, and the "
                         "workers feed them for about twenty-four days.",
                         kind="backtranslation", system=HUMPBACK_AUGMENTED_SYSTEM)
        await _publish(rt, [seed])
        request = DatasetRequested(collection="bees", eval_fraction=0.0, format="openai",
                                   options={"semantic_threshold": None})
        plain = await build(rt, request)  # no S_w record: nothing is tagged
        assert "humpback_tags" not in plain.manifest
        rows = _files(rt.store, plain.event.prefix)["train.jsonl"].decode()
        assert '"system"' not in rows
        await _publish(rt, [augmented])
        tagged = await build(rt, request)
        systems = {json.loads(x)["metadata"]["record_id"]: json.loads(x)["messages"][0]
                   for x in _files(rt.store, tagged.event.prefix)["train.jsonl"].splitlines()}
        assert systems[_rid(20)] == {"role": "system", "content": HUMPBACK_SEED_SYSTEM}
        assert systems[_rid(21)] == {"role": "system", "content": HUMPBACK_AUGMENTED_SYSTEM}
        tags = tagged.manifest["humpback_tags"]
        assert (tags["augmented"], tags["seed"]) == (1, 1)
        assert inference_system(tagged.manifest) == HUMPBACK_SEED_SYSTEM
        assert tagged.manifest["settings"]["humpback_tags"] is True
        off = await build(rt, request.model_copy(update={"options": {
            "semantic_threshold": None, "humpback_tags": False}}))
        assert inference_system(off.manifest) is None
        assert HUMPBACK_SEED_SYSTEM not in _files(rt.store, off.event.prefix)["train.jsonl"] \
            .decode()
    finally:
        await rt.close()


async def test_run_train_picks_step_by_step_when_records_have_rationales(settings):
    """Hsieh et al.: ``syllabus run --train`` with no --format trains the multi-task loss
    when the records have rationales; without --train, or with none, it is openai."""
    from syllabus.services.cli._run import default_format

    rt = Runtime.create(settings)
    await rt.bus.start()
    try:
        await _publish(rt, [_rec(30, "What do workers build?", "Wax comb.")])
        assert await default_format(rt, "bees", train=True) == (
            "openai", "no record has a rationale")
        await _publish(rt, [_rec(31, "How many eggs does a queen lay in a day?",
                                 "Up to 2,000.", rationale="The chunk says up to two "
                                 "thousand eggs a day. So the answer is Up to 2,000.")])
        fmt, why = await default_format(rt, "bees", train=True)
        assert fmt == "step-by-step" and why.startswith("1 of 2 records have a rationale")
        assert await default_format(rt, "bees", train=False) == ("openai", "")
    finally:
        await rt.close()


async def test_bus_request_produces_dataset_built(settings):
    settings.datasets.augmenters = []  # selection only (the run test covers the augmenter)
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    try:
        await _publish(rt, _collection_records())
        request = DatasetRequested(collection="bees", target_size=3, run_id="run-7",
                                   options={"near_duplicate_threshold": 0.9})
        await rt.bus.publish(request)
        built: list[DatasetBuilt] = []
        for _ in range(150):
            built = [DatasetBuilt.model_validate_json(m.data)
                     for m in await replay(rt.bus, DATASETS_BUILT)]
            if built:
                break
            await asyncio.sleep(0.2)
        assert len(built) == 1, "no DatasetBuilt within 30 s"
        ev = built[0]
        assert ev.collection == "bees" and ev.run_id == "run-7"
        assert ev.train_rows + ev.eval_rows == 3 == ev.counts["selected"]
        assert ev.counts["diversity"] == 10
        assert rt.store.exists(ev.prefix + "manifest.json")
        direct = await build_dataset(rt, request)
        assert direct.version == ev.version
        infos = {i.config.durable_name for i in await rt.bus.js.consumers_info("SYLLABUS")}
        assert SERVICE in infos
    finally:
        await rt.close()


def test_cli_dataset_build(settings, nats_server, tmp_path):
    async def publish() -> None:
        rt = Runtime.create(settings)
        await rt.bus.start()
        try:
            await _publish(rt, _collection_records())
        finally:
            await rt.close()

    asyncio.run(publish())
    eval_file = tmp_path / "heldout.txt"
    eval_file.write_text(EVAL_PASSAGE + "\n")
    env = {"SYLLABUS_NATS__URL": nats_server.url, "SYLLABUS_STORE__KIND": "local",
           "SYLLABUS_STORE__PATH": str(tmp_path / "store"), "SYLLABUS_COLLECTION": "bees",
           "SYLLABUS_DATASETS__AUGMENTERS": "[]"}
    runner = CliRunner()
    result = runner.invoke(dataset_group, ["build", "--json", "--decontaminate", str(eval_file),
                                           "--semantic-threshold", "off", "--format",
                                           "step-by-step"], env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["written"] and out["collection"] == "bees" and out["format"] == "step-by-step"
    steps = {s["step"]: s for s in out["steps"]}
    assert steps["exact_duplicate"]["removed"] == 1 and steps["contaminated"]["removed"] == 1
    assert steps["semantic_duplicate"]["skipped"] == "off"
    # semantic dedup is off and there is no target size: nothing is embedded
    assert list(out["timings"]) == ["load", "embed", "exact_duplicate", "near_duplicate",
                                    "contaminated", "export", "write"]
    assert out["timings"]["embed"] == 0
    store = LocalStore(tmp_path / "store")
    manifest = json.loads(store.get(out["prefix"] + "manifest.json"))
    assert manifest["version"] == out["version"]
    assert manifest["settings"]["decontaminate"]["source"] == str(eval_file)
    assert out["train_rows"] + out["eval_rows"] == 12  # no rationales: predict rows only

    again = runner.invoke(dataset_group, ["build", "-c", "bees", "--decontaminate",
                                          str(eval_file), "--semantic-threshold", "off",
                                          "--format", "step-by-step"], env=env)
    assert again.exit_code == 0, again.output
    assert out["version"] in again.stdout and "already in the store" in again.stdout
    assert "near_duplicate" in again.stdout and "contaminated" in again.stdout
    assert "build time: load " in again.stdout

    missing = runner.invoke(dataset_group, ["build", "-c", "nothing-here"], env=env)
    assert missing.exit_code == 1 and "no accepted records" in missing.output


async def test_requests_that_can_build_nothing_are_answered_at_once_not_retried(settings):
    """No accepted records is a normal outcome, and bad options can never work: each is
    answered on datasets.failed on its first delivery, with no retry and no dead letter."""
    from syllabus.contracts import DATASETS_FAILED, DLQ_ALL, DatasetFailed

    settings.bus.backoff = [5.0]  # a retry would take 5 s: the answers must come before
    rt = Runtime.create(settings)
    rt.bus.broker.include_router(build_router(rt))
    await rt.bus.start()
    try:
        await rt.bus.publish(DatasetRequested(collection="empty", run_id="r1"))
        await _publish(rt, _collection_records())
        await rt.bus.publish(DatasetRequested(collection="bees", run_id="r2",
                                              options={"no_such_option": 1}))
        started = asyncio.get_running_loop().time()
        failed: list[DatasetFailed] = []
        while len(failed) < 2 and asyncio.get_running_loop().time() - started < 4.5:
            await asyncio.sleep(0.1)
            failed = [DatasetFailed.model_validate_json(m.data)
                      for m in await replay(rt.bus, DATASETS_FAILED)]
        assert {(f.collection, f.reason) for f in failed} == {
            ("empty", "no_accepted_records"), ("bees", "invalid_request")}
        assert "no accepted records" in next(f.detail for f in failed if f.collection == "empty")
        assert "no_such_option" in next(f.detail for f in failed if f.collection == "bees")
        await wait_drained(rt, timeout=30)
        infos = {i.config.durable_name: i for i in await rt.bus.js.consumers_info("SYLLABUS")}
        assert infos[SERVICE].num_redelivered == 0
        assert await replay(rt.bus, DLQ_ALL) == []
        assert await replay(rt.bus, DATASETS_BUILT) == []
    finally:
        await rt.close()


def test_an_infinite_selection_option_survives_the_bus_json():
    """``source_temperature = inf`` in a recipe travels in ``DatasetRequested.options``:
    as JSON it is ``"Infinity"``, not ``null`` (which would mean "not set")."""
    from syllabus.services.datasets._build import request_options

    req = DatasetRequested(collection="bees", target_size=5,
                           options={"source_temperature": math.inf})
    assert '"Infinity"' in req.model_dump_json()
    back = DatasetRequested.model_validate_json(req.model_dump_json())
    assert math.isinf(request_options(back).source_temperature)
    assert request_options(DatasetRequested(collection="bees", options={"lima": True})
                           ).target_size == 1000
