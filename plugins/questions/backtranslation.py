"""``backtranslation``: instruction backtranslation with self-curation.

Li et al. 2023, "Self-Alignment with Instruction Backtranslation" (Humpback):

1. **Self-augmentation.** A passage of the organisation's own text is taken as the
   *output*, and the teacher writes the instruction it answers (the paper's backward
   model predicts the instruction from the output).
2. **Self-curation.** The teacher rates the (instruction, output) pair with the paper's
   5-point prompt (Table 1, verbatim below); ``Score: N`` is parsed from the last line
   and the pair is kept at a score >= k (``min_score``, 5 by default, the paper's A_5).
   The score and the teacher's reasoning go into the record either way; a pair under k is
   rejected with that reason.
3. **Tagging** (§2.3; ``tag_system_prompt``, on by default): curated examples carry the
   paper's system prompt for augmented data, S_w = "Answer with knowledge from web
   search.". The data set builder then tags every other record of the data set (the seed
   side: qa-pairs and the rest) with S_a = "Answer in the style of an AI Assistant.", and
   the server asks a model trained on such a data set with S_a when a request brings no
   system message (``syllabus.contracts.inference_system``).

**A base model** (a teacher with ``base_model``, such as the ``local`` teacher on Gemma 3
270M) gets few-shot completion prompts instead, closer to the paper's own backward model
(a model that continues an output with its instruction) than a chat prompt is:

* self-augmentation continues ``BASE_AUGMENT_PROMPT`` (three short response/instruction
  examples, then ``Response: <chunk>`` / ``Instruction:``), one line;
* self-curation continues Table 1's rubric, the pair, and ``Score:`` with the score
  alone (2 tokens): the paper asks for a brief reasoning first, which a 270M base model
  does not give before its token limit. The record's reasoning says so. No grammar holds
  the score to 1-5: tried with Gemma 3 270M, it scored 208 of 210 hand-labelled pairs 1
  (``bench_techniques.py``, row ``humpback``), so an out-of-scale answer stays a named
  parse failure rather than becoming a 1.

Departures from the paper: there is no trained backward model M_yx and no iteration (the
teacher is prompted for both steps); the paper's seed model M_0 is fine-tuned on seed data.

**Languages** (not in the paper, which is English): the instruction is written in the
chunk's language (``lineage.language``), or in the ``language`` option when set. The chat
prompt names it; a base model gets the few-shot examples in it (``BASE_AUGMENT_PROMPTS``:
English, German, French; another language gets the English ones). Self-curation keeps
Table 1's English rubric, verbatim, whatever the pair's language.

Options: ``min_score`` (5), ``min_chunk_tokens`` (48), ``tag_system_prompt`` (true),
``temperature`` (0.7, the paper's sampling temperature for generation), ``language`` (the
chunk's).
"""

from __future__ import annotations

from typing import Any

from syllabus.contracts import (
    HUMPBACK_AUGMENTED_SYSTEM,
    HUMPBACK_SEED_SYSTEM,
    TASK_BACKTRANSLATE,
    TASK_CURATE,
    ChatMessage,
    ChunkCreated,
    Failure,
    GenerationParams,
    OutputParseError,
    Parsed,
    PluginRef,
    QARecord,
    RecordDecision,
    Teacher,
    TeacherRef,
    TechniqueOutput,
    ask,
    hookimpl,
    output_language,
    parse_score,
    prompt_hash,
    prompt_language,
)

__all__ = ["CURATION_PROMPT", "BacktranslationGenerator", "curate",
           "register_question_generators"]

VERSION = "1"

#: S_w and S_a (``syllabus.contracts``): this technique tags its records S_w; the data set
#: builder tags the seed records S_a, and the server asks with S_a
AUGMENTED_SYSTEM_PROMPT = HUMPBACK_AUGMENTED_SYSTEM
SEED_SYSTEM_PROMPT = HUMPBACK_SEED_SYSTEM

AUGMENT_PROMPT = '''Below is a response written by an AI assistant. Write the instruction from a user that this response answers best. The instruction must make sense on its own and must ask for exactly what the response provides.

Response:
"""
{output}
"""

Write the instruction only, in {language}, with nothing before or after it.'''

#: Table 1 of Li et al. 2023, verbatim; the last line is the paper's
#: "<generated instruction> <output>" placeholder, filled in.
CURATION_PROMPT = '''Below is an instruction from an user and a candidate answer. Evaluate whether or not the answer is a good example of how AI Assistant should respond to the user's instruction. Please assign a score using the following 5-point scale:
1: It means the answer is incomplete, vague, off-topic, controversial, or not exactly what the user asked for. For example, some content seems missing, numbered list does not start from the beginning, the opening sentence repeats user's question. Or the response is from another person's perspective with their personal experience (e.g. taken from blog posts), or looks like an answer from a forum. Or it contains promotional text, navigation text, or other irrelevant information.
2: It means the answer addresses most of the asks from the user. It does not directly address the user's question. For example, it only provides a high-level methodology instead of the exact solution to user's question.
3: It means the answer is helpful but not written by an AI Assistant. It addresses all the basic asks from the user. It is complete and self contained with the drawback that the response is not written from an AI assistant's perspective, but from other people's perspective. The content looks like an excerpt from a blog post, web page, or web search results. For example, it contains personal experience or opinion, mentions comments section, or share on social media, etc.
4: It means the answer is written from an AI assistant's perspective with a clear focus of addressing the instruction. It provide a complete, clear, and comprehensive response to user's question or instruction without missing or irrelevant information. It is well organized, self-contained, and written in a helpful tone. It has minor room for improvement, e.g. more concise and focused.
5: It means it is a perfect answer from an AI Assistant. It has a clear focus on being a helpful AI Assistant, where the response looks like intentionally written to address the user's question or instruction without any irrelevant sentences. The answer provides high quality content, demonstrating expert knowledge in the area, is very well written, logical, easy-to-follow, engaging and insightful.

Please first provide a brief reasoning you used to derive the rating score, and then write "Score: <rating>" in the last line.

{instruction}
{output}'''


BASE_AUGMENT_PROMPT = (
    "Response: Books are lent for three weeks and may be renewed twice online, unless "
    "another reader has reserved them. Films are lent for one week and cannot be "
    "renewed.\nInstruction: How long can I keep library books and films, and can I renew "
    "them?\n\n"
    "Response: Water in a closed cooling loop is treated with an inhibitor because "
    "untreated water corrodes the steel pipes. The level is checked every month.\n"
    "Instruction: Why does the cooling loop water get an inhibitor, and how often is it "
    "checked?\n\n"
    "Response: Expense claims must be filed within 60 days of the purchase. Claims over 500 "
    "euros also need the approval of a department head.\nInstruction: What are the rules "
    "for filing an expense claim?\n\n"
    "Response: {output}\nInstruction:")

#: the same examples in German and in French, labels included, so that a base model
#: continuing a German passage writes a German instruction
BASE_AUGMENT_PROMPTS = {
    "en": BASE_AUGMENT_PROMPT,
    "de": (
        "Antwort: Bücher werden für drei Wochen verliehen und können zweimal online "
        "verlängert werden, außer ein anderer Leser hat sie vorgemerkt. Filme werden für eine "
        "Woche verliehen und können nicht verlängert werden.\nAnweisung: Wie lange kann ich "
        "Bücher und Filme aus der Bibliothek behalten, und kann ich sie verlängern?\n\n"
        "Antwort: Das Wasser in einem geschlossenen Kühlkreislauf wird mit einem Inhibitor "
        "behandelt, weil unbehandeltes Wasser die Stahlrohre angreift. Der Füllstand wird "
        "jeden Monat geprüft.\nAnweisung: Warum bekommt das Wasser im Kühlkreislauf einen "
        "Inhibitor, und wie oft wird es geprüft?\n\n"
        "Antwort: Spesenabrechnungen müssen innerhalb von 60 Tagen nach dem Kauf eingereicht "
        "werden. Abrechnungen über 500 Euro brauchen außerdem die Zustimmung einer "
        "Abteilungsleitung.\nAnweisung: Welche Regeln gelten für eine Spesenabrechnung?\n\n"
        "Antwort: {output}\nAnweisung:"),
    "fr": (
        "Réponse : Les livres sont prêtés pour trois semaines et peuvent être prolongés deux "
        "fois en ligne, sauf si un autre lecteur les a réservés. Les films sont prêtés pour "
        "une semaine et ne peuvent pas être prolongés.\nConsigne : Combien de temps puis-je "
        "garder les livres et les films de la bibliothèque, et puis-je les prolonger ?\n\n"
        "Réponse : L'eau d'un circuit de refroidissement fermé est traitée avec un "
        "inhibiteur, parce que l'eau non traitée corrode les tuyaux en acier. Le niveau est "
        "contrôlé chaque mois.\nConsigne : Pourquoi l'eau du circuit de refroidissement "
        "reçoit-elle un inhibiteur, et à quelle fréquence est-elle contrôlée ?\n\n"
        "Réponse : Les notes de frais doivent être déposées dans les 60 jours suivant "
        "l'achat. Celles de plus de 500 euros doivent aussi être approuvées par un chef de "
        "service.\nConsigne : Quelles sont les règles pour déposer une note de frais ?\n\n"
        "Réponse : {output}\nConsigne :"),
}

#: Table 1's rubric without its request for a reasoning; the pair; then the score
BASE_CURATION_PROMPT = (
    CURATION_PROMPT.split("\n\nPlease first provide")[0]
    + "\n\nInstruction: {instruction}\nAnswer: {output}\nScore:")


def _base_score(text: str) -> tuple[int, str]:
    score, _ = parse_score("Score:" + (text.split() or [""])[0].rstrip(".,"))
    return score, "(a base model gives the score alone, with no reasoning)"


def _instruction(text: str) -> str:
    line = text.strip().strip('"').strip()
    for prefix in ("Instruction:", "instruction:", "User:", "Question:", "Anweisung:",
                   "Frage:", "Consigne :", "Consigne:"):
        if line.startswith(prefix):
            line = line[len(prefix):].strip()
    if not line or len(line) < 8:
        raise OutputParseError("the instruction is empty or too short")
    if len(line) > 1000:
        raise OutputParseError("the instruction is longer than 1000 characters")
    return line


async def curate(teacher: Teacher, instruction: str, output: str) -> Parsed[tuple[int, str]]:
    """Self-curation of one (instruction, output) pair (step 2 of the module docstring):
    Table 1's prompt (its base-model form for a base model), parsed to (score, reasoning).
    The benchmark (``benchmarks/bench_techniques.py``, row ``humpback``) curates its
    hand-labelled pool through this same function."""
    base = bool(getattr(teacher, "base_model", False))
    flat = " ".join(output.split())
    return await ask(
        teacher, [ChatMessage(role="user", content=CURATION_PROMPT.format(
            instruction=instruction, output=output))],
        params=GenerationParams(
            temperature=0.0, max_tokens=3 if base else 512,
            prompt=BASE_CURATION_PROMPT.format(instruction=instruction, output=flat)
            if base else None,
            task=TASK_CURATE, inputs={"instruction": instruction, "response": output}),
        parse=_base_score if base else parse_score)


class BacktranslationGenerator:
    name = "backtranslation"

    async def generate(self, chunk: ChunkCreated, *, teacher: Teacher,
                       options: dict[str, Any]) -> TechniqueOutput:
        if chunk.token_count < int(options.get("min_chunk_tokens", 48)):
            return TechniqueOutput()
        output = chunk.text.strip()
        k = int(options.get("min_score", 5))
        temperature = float(options.get("temperature", 0.7))
        base = bool(getattr(teacher, "base_model", False))
        flat = " ".join(output.split())
        language = output_language(chunk, options)
        base_prompt = BASE_AUGMENT_PROMPTS.get(language or "en", BASE_AUGMENT_PROMPT)
        augmented = await ask(
            teacher, [ChatMessage(role="user", content=AUGMENT_PROMPT.format(
                output=output, language=prompt_language(language) if language
                else "the language of the response"))],
            params=GenerationParams(
                temperature=temperature, max_tokens=64 if base else 256,
                stop=["\n"] if base else None,
                prompt=base_prompt.format(output=flat) if base else None,
                task=TASK_BACKTRANSLATE, inputs={"response": output}),
            parse=_instruction)
        if not augmented.ok:
            return TechniqueOutput(failures=[Failure(
                reason=f"unusable backtranslated instruction: {augmented.error}",
                raw_output=augmented.raw)])
        instruction = augmented.value
        curated = await curate(teacher, instruction, output)
        technique = PluginRef(name=self.name, version=VERSION)
        teacher_ref = TeacherRef(kind=teacher.kind, model=teacher.model)
        record_id = QARecord.make_id(chunk_id=chunk.chunk_id, technique=technique,
                                     teacher=teacher_ref, settings={"k": k},
                                     instruction=instruction, response=output)
        if not curated.ok:
            return TechniqueOutput(failures=[Failure(
                reason=f"unusable self-curation output: {curated.error}",
                raw_output=curated.raw, record_id=record_id)])
        score, reasoning = curated.value
        kept = score >= k
        decision = RecordDecision(
            filter="backtranslation:self-curation", kept=kept, score=float(score),
            threshold=float(k),
            reason=(f"self-curation score {score} {'>=' if kept else '<'} {k}: "
                    f"{reasoning or 'no reasoning given'}"),
            details={"reasoning": reasoning})
        tag = bool(options.get("tag_system_prompt", True))
        return TechniqueOutput(records=[QARecord(
            record_id=record_id, collection=chunk.collection, kind="backtranslation",
            instruction=instruction, response=output, chunk_id=chunk.chunk_id,
            lineage=chunk.lineage, technique=technique, teacher=teacher_ref,
            prompt_hash=prompt_hash(base_prompt, BASE_CURATION_PROMPT) if base
            else prompt_hash(AUGMENT_PROMPT, CURATION_PROMPT),
            system=AUGMENTED_SYSTEM_PROMPT if tag else None,
            scores={"curation": float(score)}, decisions=[decision], run_id=chunk.run_id)])


@hookimpl
def register_question_generators(register):
    register(BacktranslationGenerator())
