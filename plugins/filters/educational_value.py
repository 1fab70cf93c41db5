"""``educational-value``: phi-1's "textbook quality" filter, run on a stream of records.

Gunasekar et al. 2023, "Textbooks Are All You Need", §2.1: a language model annotates a
small subset of the data for its "educational value for a student whose goal is to learn
basic coding concepts"; a random forest classifier, trained on embeddings of the annotated
samples, then predicts the educational value of everything else, and only data above a
threshold is kept. Here the student is learning the topic of the collection's documents,
and the data arrives one record at a time:

1. **Annotation.** Per collection, the first ``sample_size`` records are rated by the
   teacher, from 1 to 5 (task ``educational``: JSON ``{"score", "reasoning"}``). The
   offline ``extractive`` teacher refuses the task (a rule's "educational value" would be
   its groundedness rule under another name), and the filter raises, naming why; the
   sycophancy-filter service refuses to start with it. Departure: the sample is the first
   ``sample_size`` records of the stream, not a random sample (a seeded random sample of
   a stream needs the records that are not drawn to wait or be redelivered until the
   classifier exists; not built yet). Each annotation (record id, the record's text and
   its sha256, score, reasoning, teacher) is written to
   ``annotations/<collection>/educational-value/<record_id>.json``, so every replica sees
   it. An annotated record is kept when its score is at least ``threshold``; a record that
   already has an annotation (a redelivery, another replica's work) is decided from it,
   without a teacher call.
2. **Training.** Once ``sample_size`` annotations exist and no classifier does, a
   ``RandomForestClassifier`` (binary: score >= ``threshold``) is trained on the
   embeddings of ``instruction + "\\n\\n" + response``. Agreement with the teacher
   (accuracy and F1 of the "educational" class) is measured on a held-out part of the
   annotations (``holdout``, 20%); then the forest is retrained on all of them and stored::

       models/classifiers/<collection>/educational-value/<sha>/model.pkl   (pickle)
       models/classifiers/<collection>/educational-value/<sha>/meta.json
       models/classifiers/<collection>/educational-value/latest.json       (the pointer)

   ``<sha>`` hashes the annotation set (sorted by record id: id, text hash, score), the
   threshold, the embedder's model, the classifier's settings and the split, so replicas
   that train on the same annotations at once make the same artifact under the same key.
   A replica that finds the artifact already there adopts it without training; the
   pointer is written only when absent, so the first classifier of a collection stays its
   classifier. (Should two replicas' forests differ in their bytes, because their
   embeddings differed in the last bits, and their writes interleave, ``model.pkl`` no
   longer matches the sha256 in ``meta.json``: such a torn artifact is never loaded, and the
   next replica that needs it trains it again and rewrites both.) In one process, handlers running concurrently reserve the annotation slots,
   so no more than ``sample_size`` records are sent to the teacher, and the rest wait for
   the classifier.
3. **Prediction.** Every later record is embedded and scored by the classifier: it is kept
   when the predicted probability of "educational" is at least ``min_probability``.
   The decision's score is that probability; its details name the classifier's key and
   its held-out agreement.

The loaded classifier is cached per filter instance and collection; ``latest.json`` is
re-read at most every ``reload_seconds``, and a changed pointer loads the new classifier.

**Trust boundary.** ``model.pkl`` is a pickle, and unpickling runs code. The filter loads
a classifier only from the store it is handed, only from this filter's own key prefix for
the collection, and only when its bytes match the sha256 recorded in ``meta.json`` (which
guards against a torn or mixed-up object, not an attacker). Anyone who can write to the
store's ``models/classifiers/`` prefix can run code in the filter's process: give that
prefix the same protection as the deployed code, and never point the filter at a store
holding artifacts from elsewhere.

What the service passes
-----------------------
A plugin does not import ``syllabus.services``; the service injects these objects into the
filter's ``options`` (besides the recipe's settings below):

- ``store``: the ``ArtifactStore`` (annotations and classifiers live there). Required.
- ``embedder``: an ``Embedder`` (the runtime's all-MiniLM-L6-v2; ``embed_array`` is used
  when it has one, else ``embed``). Required.
- ``collection``: optional; the record's own ``collection`` by default. Records of
  collections that share a value share the annotations and the classifier.

The filter also needs the service's ``teacher`` while it annotates (it raises
``ValueError`` without one); once a classifier exists, it makes no teacher calls.

Options (recipe): ``sample_size`` (200: how many records the teacher annotates),
``threshold`` (3, on the 1-5 scale), ``min_probability`` (0.5), ``holdout`` (0.2),
``n_estimators`` (100), ``random_state`` (0), ``reload_seconds`` (30), ``topic`` (what the
student is learning; "the topic of the source documents" by default), ``temperature``
(0.0), ``on_failure`` ("drop": a record whose annotation cannot be parsed, even after one
retry, is dropped with the raw output in the decision and is not stored as an annotation;
"keep" keeps it).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import pickle
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syllabus.contracts import (
    TASK_EDUCATIONAL,
    ArtifactStore,
    ChatMessage,
    GenerationParams,
    QARecord,
    RecordDecision,
    Teacher,
    ask,
    canonical_json,
    content_id,
    hookimpl,
    json_model,
    prompt_hash,
    sha256_hex,
)

__all__ = [
    "ANNOTATION_PROMPT",
    "Annotation",
    "EducationalValueFilter",
    "EducationalValueOptions",
    "Rating",
    "annotation_key",
    "annotation_prefix",
    "classifier_prefix",
    "classifier_sha",
    "latest_key",
    "record_text",
    "register_filters",
]

NAME = "educational-value"
log = logging.getLogger("syllabus.plugins.educational_value")

ANNOTATION_PROMPT = '''You are selecting training data for a language model that should teach {topic}. Determine the educational value of the example below for a student whose goal is to learn {topic}, on a scale of 1 to 5.

5: It explains a concept, fact or procedure of the topic clearly, correctly and self-containedly, as a good textbook would; a student learns something from it.
4: Clear and correct, and instructive, but narrow or with minor gaps.
3: Some educational value: it states a relevant fact, but without explanation or context.
2: Little educational value: vague, mostly opinion or anecdote, or too fragmentary to learn from.
1: No educational value: promotional, boilerplate, navigation, off-topic, or wrong.

Instruction:
{instruction}

Response:
{response}

Answer with JSON only: {{"score": <1-5>, "reasoning": "<one or two sentences>"}}'''

_DEFAULT_TOPIC = "the topic of the source documents"


def refusal(teacher: Any) -> str:
    """Why ``teacher`` cannot annotate (it lists the ``educational`` task in ``refuses``)."""
    return (f"the {NAME} filter needs a language model to annotate educational value, and "
            f"the {teacher.kind} teacher refuses the task (phi-1's label is a model's "
            "judgement, not a rule's): configure an LLM teacher (local, openai, ...) or "
            f"leave {NAME} out of filters.techniques")
_PROMPT_HASH = prompt_hash(ANNOTATION_PROMPT)
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class Rating(BaseModel):
    """The teacher's answer."""

    score: int = Field(ge=1, le=5)
    reasoning: str = ""


class Annotation(BaseModel):
    """One teacher annotation, as stored (``annotation_key``)."""

    record_id: str
    collection: str
    text_hash: str = Field(description="sha256 of record_text(): the text the classifier sees")
    instruction: str
    response: str
    score: int = Field(ge=1, le=5)
    reasoning: str = ""
    teacher: str
    prompt_hash: str


class EducationalValueOptions(BaseModel):
    """The recipe's options (the injected ``store``/``embedder``/``collection`` aside)."""

    model_config = ConfigDict(extra="forbid")

    sample_size: int = Field(default=200, ge=5)
    threshold: float = Field(default=3, ge=1, le=5)
    min_probability: float = Field(default=0.5, ge=0, le=1)
    holdout: float = Field(default=0.2, gt=0, lt=1)
    n_estimators: int = Field(default=100, ge=1)
    random_state: int = 0
    reload_seconds: float = Field(default=30.0, ge=0)
    topic: str | None = None
    temperature: float = Field(default=0.0, ge=0)
    on_failure: Literal["drop", "keep"] = "drop"
    #: read by the service (whether it makes a teacher); ignored here
    use_teacher: bool | None = None


# --- keys ------------------------------------------------------------------------------


def _safe(part: str) -> str:
    return part if _SAFE_ID.match(part) and part not in (".", "..") else sha256_hex(part)


def annotation_prefix(collection: str) -> str:
    return f"annotations/{_safe(collection)}/{NAME}/"


def annotation_key(collection: str, record_id: str) -> str:
    return f"{annotation_prefix(collection)}{_safe(record_id)}.json"


def classifier_prefix(collection: str) -> str:
    return f"models/classifiers/{_safe(collection)}/{NAME}/"


def latest_key(collection: str) -> str:
    return f"{classifier_prefix(collection)}latest.json"


def record_text(instruction: str, response: str) -> str:
    """What is embedded, for training and prediction alike."""
    return f"{instruction}\n\n{response}"


def classifier_sha(annotations: list[Annotation], *, threshold: float, embedder_model: str,
                   n_estimators: int, random_state: int, holdout: float) -> str:
    """The content address of the classifier trained on ``annotations`` (order-free)."""
    rows = sorted((a.record_id, a.text_hash, a.score) for a in annotations)
    return content_id(NAME, "random-forest/1", rows, float(threshold), embedder_model,
                      n_estimators, random_state, float(holdout))


# --- the classifier ----------------------------------------------------------------------


@dataclass
class _Classifier:
    sha: str
    model_key: str
    meta: dict[str, Any]
    model: Any

    def probability(self, vectors: Any) -> list[float]:
        """P(educational) per row."""
        classes = [int(c) for c in self.model.classes_]
        if 1 not in classes:
            return [0.0] * len(vectors)
        column = classes.index(1)
        return [float(p) for p in self.model.predict_proba(vectors)[:, column]]


@dataclass
class _State:
    """Per collection: the store it lives in, the loaded classifier, reservations."""

    store: Any
    loop: Any
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    reserved: int = 0
    reload_seconds: float = 30.0
    classifier: _Classifier | None = None
    pointer: bytes | None = None
    checked_at: float = float("-inf")


def _embed(embedder: Any, texts: list[str]) -> Any:
    import numpy as np

    if hasattr(embedder, "embed_array"):
        vectors = embedder.embed_array(texts)
    else:
        vectors = embedder.embed(texts)
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != len(texts):
        raise ValueError(f"the embedder returned shape {array.shape} for {len(texts)} texts")
    return array


def _forest(options: EducationalValueOptions) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=options.n_estimators,
                                  random_state=options.random_state, n_jobs=1)


def _agreement(truth: list[int], predicted: list[int]) -> dict[str, Any]:
    tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == 1 and p == 1)
    fp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == 0 and p == 1)
    fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t == 1 and p == 0)
    correct = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p)
    return {"n": len(truth),
            "accuracy": round(correct / len(truth), 6) if truth else None,
            # undefined (None) when neither the teacher nor the forest says "educational"
            "f1": round(2 * tp / (2 * tp + fp + fn), 6) if (tp + fp + fn) else None}


def _train(annotations: list[Annotation], *, embedder: Any, options: EducationalValueOptions,
           collection: str, sha: str) -> tuple[bytes, dict[str, Any]]:
    """Held-out agreement, then the forest on everything. Deterministic for one input."""
    import numpy as np
    import sklearn
    from sklearn.model_selection import train_test_split

    annotations = sorted(annotations, key=lambda a: a.record_id)
    x = _embed(embedder, [record_text(a.instruction, a.response) for a in annotations])
    y = np.array([1 if a.score >= options.threshold else 0 for a in annotations])
    counts = Counter(int(v) for v in y)
    n_test = max(1, round(len(y) * options.holdout))
    stratify = y if len(counts) == 2 and min(counts.values()) >= 2 and n_test >= 2 else None
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=n_test, stratify=stratify,
                                           random_state=options.random_state)
    probe = _forest(options).fit(x[train_idx], y[train_idx])
    heldout = _agreement([int(v) for v in y[test_idx]],
                         [int(v) for v in probe.predict(x[test_idx])])
    heldout["fraction"] = options.holdout

    model = _forest(options).fit(x, y)
    buf = io.BytesIO()
    pickle.dump(model, buf, protocol=pickle.HIGHEST_PROTOCOL)
    data = buf.getvalue()
    prefix = f"{classifier_prefix(collection)}{sha}/"
    meta = {
        "filter": NAME,
        "collection": collection,
        "sha": sha,
        "model_key": f"{prefix}model.pkl",
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "format": "pickle of sklearn.ensemble.RandomForestClassifier; classes 0/1, "
                  "1 = educational (teacher score >= threshold)",
        "classifier": {"type": "RandomForestClassifier", "n_estimators": options.n_estimators,
                       "random_state": options.random_state},
        "sklearn_version": sklearn.__version__,
        "threshold": options.threshold,
        "sample_size": len(annotations),
        "labels": {"educational": counts.get(1, 0), "not_educational": counts.get(0, 0)},
        "heldout": heldout,
        "embedder": {"model": getattr(embedder, "model", type(embedder).__name__),
                     "dimension": int(x.shape[1])},
        "text": 'instruction + "\\n\\n" + response',
        "prompt_hash": _PROMPT_HASH,
        "record_ids": [a.record_id for a in annotations],
    }
    return data, meta


# --- store helpers (run in a thread: stores are synchronous) ----------------------------


def _get(store: ArtifactStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except KeyError:  # the runtime's ObjectNotFound is a KeyError
        return None


def _put_json(store: ArtifactStore, key: str, value: Any) -> None:
    store.put(key, canonical_json(value).encode(), content_type="application/json")


def _annotation_keys(store: ArtifactStore, collection: str) -> list[str]:
    return sorted(k for k in store.list(annotation_prefix(collection)) if k.endswith(".json"))


def _read_annotations(store: ArtifactStore, collection: str) -> list[Annotation]:
    out = []
    for key in _annotation_keys(store, collection):
        data = _get(store, key)
        if data is not None:
            out.append(Annotation.model_validate_json(data))
    return out


def _pointer_sha(pointer: bytes) -> str | None:
    try:
        sha = str(json.loads(pointer)["sha"])
    except (ValueError, KeyError, TypeError):
        return None
    return sha if re.fullmatch(r"[0-9a-f]{64}", sha) else None


def _load(store: ArtifactStore, collection: str, sha: str) -> _Classifier | None:
    """The classifier ``<sha>/`` inside this filter's prefix, or None when it is missing or
    torn (``model.pkl`` does not match the sha256 in ``meta.json``: two replicas whose
    embeddings differed in the last bits wrote the same key at once)."""
    prefix = f"{classifier_prefix(collection)}{sha}/"
    meta_raw = _get(store, f"{prefix}meta.json")
    if meta_raw is None:
        return None
    try:
        meta = json.loads(meta_raw)
    except ValueError:
        return None
    model_key = f"{prefix}model.pkl"
    data = _get(store, model_key)
    if data is None or hashlib.sha256(data).hexdigest() != meta.get("model_sha256"):
        log.warning("%s: %s is missing or does not match the sha256 in its meta.json; it "
                    "will be trained again", NAME, model_key)
        return None
    model = pickle.loads(data)  # noqa: S301 -- our own store and prefix (module docstring)
    return _Classifier(sha=sha, model_key=model_key, meta=meta, model=model)


# --- the filter --------------------------------------------------------------------------


class EducationalValueFilter:
    name = NAME
    #: all-MiniLM-L6-v2, whose embeddings the classifier learns from, was trained on
    #: English text: records in other languages are passed over (``unsupported``)
    languages = ("en",)

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        #: per filter instance: annotated, from_annotation, predicted, trained, adopted, loaded
        self.stats: Counter[str] = Counter()

    async def judge(self, record: QARecord, *, context: str | None, teacher: Teacher | None,
                    options: dict[str, Any]) -> RecordDecision:
        opts = dict(options)
        store, embedder = opts.pop("store", None), opts.pop("embedder", None)
        collection = str(opts.pop("collection", None) or record.collection)
        try:
            cfg = EducationalValueOptions.model_validate(opts)
        except ValidationError as exc:
            raise ValueError(f"{NAME}: invalid options: {exc}") from exc
        if store is None or not isinstance(store, ArtifactStore):
            raise ValueError(f"the {NAME} filter needs the artifact store: the service must "
                             "pass options['store'] (an ArtifactStore), where annotations "
                             "and classifiers are kept")
        if embedder is None or not (hasattr(embedder, "embed_array")
                                    or hasattr(embedder, "embed")):
            raise ValueError(f"the {NAME} filter needs an embedder: the service must pass "
                             "options['embedder'] (an Embedder, e.g. the runtime's MiniLM)")

        state = self._state(collection, store, cfg)
        ann_raw = await asyncio.to_thread(_get, store, annotation_key(collection,
                                                                      record.record_id))
        if ann_raw is not None:
            self.stats["from_annotation"] += 1
            return self._annotated(Annotation.model_validate_json(ann_raw), cfg, collection,
                                   stored=True)

        classifier = await self._current(state, collection, embedder)
        if classifier is None:
            classifier = await self._reserve_or_train(state, collection, embedder, cfg)
        if classifier is None:  # a slot of the sample is reserved for this record
            return await self._annotate(record, context, teacher, state, collection,
                                        embedder, cfg)
        return await self._predict(record, classifier, embedder, cfg)

    # - per collection state -

    def _state(self, collection: str, store: Any, cfg: EducationalValueOptions) -> _State:
        loop = asyncio.get_running_loop()
        state = self._states.get(collection)
        # a new store, or a new event loop (asyncio's Condition belongs to one), starts over
        if state is None or state.store is not store or state.loop is not loop:
            state = self._states[collection] = _State(store=store, loop=loop)
        state.reload_seconds = cfg.reload_seconds
        return state

    async def _current(self, state: _State, collection: str, embedder: Any, *,
                       force: bool = False) -> _Classifier | None:
        """The collection's classifier, re-reading the pointer when due. A pointer to a
        missing or torn classifier leaves the one loaded before (None at first)."""
        now = time.monotonic()
        if (state.classifier is not None and not force
                and now - state.checked_at < state.reload_seconds):
            return state.classifier
        pointer = await asyncio.to_thread(_get, state.store, latest_key(collection))
        state.checked_at = now
        if pointer is None or (pointer == state.pointer and state.classifier is not None):
            return state.classifier
        sha = _pointer_sha(pointer)
        classifier = (await asyncio.to_thread(_load, state.store, collection, sha)
                      if sha is not None else None)
        if classifier is None:
            log.warning("%s: %s does not lead to a usable classifier", NAME,
                        latest_key(collection))
            return state.classifier
        self._check_embedder(classifier, embedder)
        state.classifier, state.pointer = classifier, pointer
        self.stats["loaded"] += 1
        return classifier

    @staticmethod
    def _check_embedder(classifier: _Classifier, embedder: Any) -> None:
        trained = classifier.meta.get("embedder", {}).get("model")
        ours = getattr(embedder, "model", type(embedder).__name__)
        if trained != ours:
            raise ValueError(f"the {NAME} classifier {classifier.model_key} was trained on "
                             f"{trained!r} embeddings, but the embedder given is {ours!r}")

    async def _reserve_or_train(self, state: _State, collection: str, embedder: Any,
                                cfg: EducationalValueOptions) -> _Classifier | None:
        """None when this record takes one of the sample's annotation slots; else the
        classifier (trained or adopted here, or by another handler meanwhile)."""
        async with state.cond:
            while True:
                classifier = await self._current(state, collection, embedder)
                if classifier is not None:
                    return classifier
                keys = await asyncio.to_thread(_annotation_keys, state.store, collection)
                if len(keys) + state.reserved < cfg.sample_size:
                    state.reserved += 1
                    return None
                if state.reserved == 0:
                    return await self._train(state, collection, embedder, cfg)
                await state.cond.wait()

    async def _train(self, state: _State, collection: str, embedder: Any,
                     cfg: EducationalValueOptions) -> _Classifier:
        """Train (or adopt the same content-addressed artifact); hold ``state.cond``."""
        classifier = await self._current(state, collection, embedder, force=True)
        if classifier is not None:
            return classifier
        store = state.store
        annotations = await asyncio.to_thread(_read_annotations, store, collection)
        model = getattr(embedder, "model", type(embedder).__name__)
        sha = classifier_sha(annotations, threshold=cfg.threshold, embedder_model=model,
                             n_estimators=cfg.n_estimators, random_state=cfg.random_state,
                             holdout=cfg.holdout)
        prefix = f"{classifier_prefix(collection)}{sha}/"
        if await asyncio.to_thread(_load, store, collection, sha) is not None:
            self.stats["adopted"] += 1
        else:
            data, meta = await asyncio.to_thread(_train, annotations, embedder=embedder,
                                                 options=cfg, collection=collection, sha=sha)
            # the model first, its meta second, the pointer last: whoever sees one of them
            # finds what it refers to. Another replica may have written the same key while
            # this one trained: then its artifact stands (same annotations, same forest).
            if await asyncio.to_thread(_load, store, collection, sha) is not None:
                self.stats["adopted"] += 1
            else:
                await asyncio.to_thread(store.put, f"{prefix}model.pkl", data,
                                        content_type="application/octet-stream")
                await asyncio.to_thread(_put_json, store, f"{prefix}meta.json", meta)
                self.stats["trained"] += 1
        pointer = canonical_json({"sha": sha, "model": f"{prefix}model.pkl",
                                  "meta": f"{prefix}meta.json"}).encode()
        # written only when absent (or useless): a pointer another replica wrote meanwhile
        # wins, so every replica converges on one classifier
        if await asyncio.to_thread(_get, store, latest_key(collection)) is None:
            await asyncio.to_thread(store.put, latest_key(collection), pointer,
                                    content_type="application/json")
        classifier = await self._current(state, collection, embedder, force=True)
        if classifier is None:
            await asyncio.to_thread(store.put, latest_key(collection), pointer,
                                    content_type="application/json")
            classifier = await self._current(state, collection, embedder, force=True)
        if classifier is None:
            raise RuntimeError(f"{NAME}: the classifier {prefix} cannot be read back from the "
                               "store")
        return classifier

    # - the two ways to decide -

    async def _annotate(self, record: QARecord, context: str | None, teacher: Teacher | None,
                        state: _State, collection: str, embedder: Any,
                        cfg: EducationalValueOptions) -> RecordDecision:
        stored = False
        try:
            if teacher is None:
                raise ValueError(f"the {NAME} filter needs a teacher to annotate the first "
                                 f"{cfg.sample_size} records of a collection")
            if TASK_EDUCATIONAL in getattr(teacher, "refuses", ()):
                raise ValueError(refusal(teacher))
            topic = cfg.topic or _DEFAULT_TOPIC
            inputs = {"instruction": record.instruction, "response": record.response,
                      "topic": topic}
            messages = [ChatMessage(role="user", content=ANNOTATION_PROMPT.format(
                topic=topic, instruction=record.instruction, response=record.response))]
            params = GenerationParams(temperature=cfg.temperature, max_tokens=300,
                                      json_schema=Rating.model_json_schema(),
                                      task=TASK_EDUCATIONAL, inputs=inputs)
            result = await ask(teacher, messages, params=params, parse=json_model(Rating))
            teacher_name = f"{teacher.kind}:{teacher.model}"
            if not result.ok:
                keep = cfg.on_failure == "keep"
                return RecordDecision(
                    filter=NAME, kept=keep, threshold=cfg.threshold,
                    reason=f"the educational-value annotation could not be used "
                           f"({result.error}); {'kept' if keep else 'dropped'} as on_failure "
                           "says",
                    details={"method": "teacher", "teacher": teacher_name,
                             "prompt_hash": _PROMPT_HASH, "raw_output": result.raw[:4000]})
            rating: Rating = result.value
            text = record_text(record.instruction, record.response)
            annotation = Annotation(
                record_id=record.record_id, collection=collection, text_hash=sha256_hex(text),
                instruction=record.instruction, response=record.response, score=rating.score,
                reasoning=rating.reasoning, teacher=teacher_name, prompt_hash=_PROMPT_HASH)
            await asyncio.to_thread(_put_json, state.store,
                                    annotation_key(collection, record.record_id),
                                    annotation.model_dump(mode="json"))
            stored = True
            self.stats["annotated"] += 1
            return self._annotated(annotation, cfg, collection, stored=False)
        finally:
            async with state.cond:
                state.reserved -= 1
                state.cond.notify_all()
                if stored and state.reserved == 0 and state.classifier is None:
                    # the sample may be complete now: train at once, so the classifier is
                    # there for the next record. A failure here is not this record's: the
                    # next record that needs the classifier trains again, and fails loudly.
                    try:
                        keys = await asyncio.to_thread(_annotation_keys, state.store,
                                                       collection)
                        if len(keys) >= cfg.sample_size:
                            await self._train(state, collection, embedder, cfg)
                    except Exception:
                        log.exception("%s: training the classifier for %r failed", NAME,
                                      collection)

    def _annotated(self, annotation: Annotation, cfg: EducationalValueOptions,
                   collection: str, *, stored: bool) -> RecordDecision:
        kept = annotation.score >= cfg.threshold
        return RecordDecision(
            filter=NAME, kept=kept, score=float(annotation.score), threshold=cfg.threshold,
            reason=(f"teacher-rated educational value {annotation.score} "
                    f"{'>=' if kept else '<'} {cfg.threshold:g}: "
                    f"{annotation.reasoning or 'no reasoning given'}"),
            details={"method": "teacher", "scale": "1-5", "teacher": annotation.teacher,
                     "prompt_hash": annotation.prompt_hash, "reasoning": annotation.reasoning,
                     "annotation": annotation_key(collection, annotation.record_id),
                     "from_store": stored})

    async def _predict(self, record: QARecord, classifier: _Classifier, embedder: Any,
                       cfg: EducationalValueOptions) -> RecordDecision:
        text = record_text(record.instruction, record.response)

        def run() -> float:
            return classifier.probability(_embed(embedder, [text]))[0]

        probability = await asyncio.to_thread(run)
        self.stats["predicted"] += 1
        kept = probability >= cfg.min_probability
        heldout = classifier.meta.get("heldout", {})
        return RecordDecision(
            filter=NAME, kept=kept, score=round(probability, 6),
            threshold=cfg.min_probability,
            reason=(f"classifier P(educational) {probability:.2f} "
                    f"{'>=' if kept else '<'} {cfg.min_probability:g} (random forest on "
                    f"{classifier.meta.get('sample_size')} teacher annotations, held-out "
                    f"accuracy {_fmt(heldout.get('accuracy'))})"),
            details={"method": "classifier", "scale": "probability",
                     "classifier": classifier.model_key, "sha": classifier.sha,
                     "probability": probability, "heldout": heldout,
                     "teacher_threshold": classifier.meta.get("threshold"),
                     "embedder": classifier.meta.get("embedder", {}).get("model")})


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@hookimpl
def register_filters(register):
    register(EducationalValueFilter())
