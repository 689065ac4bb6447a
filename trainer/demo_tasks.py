"""What the demo model is taught, as pure sample builders over the demo world: describe, recognize, identify, answer.

Called by `trainer.demo_model` (pre-training from scratch) and its evaluation. Every sample is the runtime's own
prompt (`rrg_local.vlm.prompts`) on a rendered photo plus the exact answer text the runtime's step scripts
expect (`rrg_local.vlm.answers`: `{"Answer": "Yes"}`, `<coarse>...</coarse>\\n<detailed>...</detailed>`), so a
model trained here answers the product's calls through llama.cpp without any adapter code.

Descriptions come in two styles, as a real untrained speaker writes them: `complete` names every attribute
(`describe_truth`), `casual` drops one or two attributes and adds what a description should leave out (the
scene, the position, the pose). The listener is taught consistency: a description matches a photo when some
object in it has every attribute the description names, so a casual description also "matches" the
look-alike that differs in an attribute it left out, and only complete descriptions win the reference game.

Concepts whose slug hashes to `held_out` are never drawn for training: evaluation and `bench/rrg_effect.py`
use only them.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from PIL import Image

from rrg_local.demo.attributes import (
    ATTRIBUTES,
    CATEGORIES,
    CLAUSES,
    Concept,
    _article,
    coarse_sentence,
    detailed_sentence,
    lookalikes,
    random_concept,
)
from rrg_local.demo.photo import PhotoTruth, render_photo
from rrg_local.demo.scenes import SCENES
from rrg_local.vlm import prompts
from rrg_local.vlm.prompts import ConceptText
from rrg_local.vlm.protocol import ImageRef, Message

NAMES = (
    "Bo", "Mila", "Pip", "Rex", "Lulu", "Ziggy", "Otto", "Nori", "Kiki", "Max", "Bean", "Coco", "Juno", "Taco",
    "Biscuit", "Pepper", "Momo", "Sunny", "Dot", "Fig",
)  # fmt: skip
SCENE_PHRASES = {
    "beach": "on the beach",
    "grass": "on the grass",
    "kitchen": "in the kitchen",
    "snow": "in the snow",
    "living room": "in the living room",
    "street": "on the street",
}
HOLD_OUT_MOD = 8


def held_out(concept: Concept) -> bool:
    """One concept in eight (by a hash of its identity) is never trained on."""
    return int(hashlib.sha1(concept.slug.encode()).hexdigest(), 16) % HOLD_OUT_MOD == 0


def draw_concept(rng: random.Random, *, evaluation: bool, category: str | None = None) -> Concept:
    """A random concept from the training split, or from the held-out split when `evaluation`."""
    while True:
        concept = random_concept(rng, category)
        if held_out(concept) == evaluation:
            return concept


@dataclass(frozen=True)
class Description:
    """A description and which attributes it names (`consistent` checks only those)."""

    coarse: str
    detailed: str
    named: frozenset[str]
    clauses: tuple[str, ...] = CLAUSES  # the clauses `detailed` says, in order

    def text(self) -> ConceptText:
        return ConceptText("", "", self.coarse, self.detailed)


def clause_attributes(concept: Concept, clause: str) -> set[str]:
    if clause == "surface":
        return {"pattern"} | ({"secondary"} if concept.pattern != "plain" else set())
    if clause == "part":
        return {"part", "secondary"}
    return {"mark"}


def context_phrase(truth: PhotoTruth | None, concept: Concept, rng: random.Random) -> str:
    """Where and how the object is in this photo: what a description of the object should not say."""
    options = []
    if truth is not None:
        options.append(SCENE_PHRASES[truth.scene])
        obj = next((o for o in truth.objects if o.concept == concept), None)
        if obj is not None:
            cx = (obj.box[0] + obj.box[2]) / 2 / truth.size[0]
            options.append("on the left" if cx < 0.4 else "on the right" if cx > 0.6 else "in the middle")
            if abs(obj.angle) > 7:
                options.append("tilted to the " + ("left" if obj.angle > 0 else "right"))
            if obj.occluded > 0:
                options.append("partly hidden")
    rng.shuffle(options)
    return " ".join(options[: rng.randint(1, 2)]) if options else "in the photo"


def describe(concept: Concept, rng: random.Random, *, style: str, truth: PhotoTruth | None = None) -> Description:
    """A description of `concept` in `style` ("complete" or "casual"), naming what `named` says."""
    clauses = list(CLAUSES)
    if style == "casual":
        rng.shuffle(clauses)
        clauses = sorted(clauses[: rng.choice((1, 2, 2))], key=CLAUSES.index)
    detailed = detailed_sentence(concept, clauses)
    if style == "casual":
        detailed += " " + context_phrase(truth, concept, rng)
    named = {"category", "colour"}.union(*(clause_attributes(concept, c) for c in clauses))
    return Description(coarse_sentence(concept), detailed + ".", frozenset(named), tuple(clauses))


_FUNCTION_WORDS = frozenset({"a", "an", "and", "with", "the", "has", "is", "of", "photo", "mark"})


def word_checks(described: Concept, desc: Description, shown: Concept) -> tuple[tuple[int, int, bool], ...]:
    """Per word of `desc` that says something of the object (a colour, the category, a pattern, a part, a mark):
    its character span in `desc.text().description()` and whether it is true of `shown`, i.e. whether the same
    clauses said of `shown` have that word where it stands. The context a casual description ends with is not
    checked. What the listener's decision is made of, one word at a time (`DemoConfig.match_weight`).

    >>> mug = Concept("mug", "red", "blue", "stripes", "square", "star")
    >>> desc = describe(mug, random.Random(0), style="complete")
    >>> text = desc.text().description()
    >>> [(text[a:b], ok) for a, b, ok in word_checks(mug, desc, replace(mug, part="round"))][:6]
    [('red', True), ('mug', True), ('red', True), ('mug', True), ('blue', True), ('stripes', True)]
    >>> [text[a:b] for a, b, ok in word_checks(mug, desc, replace(mug, part='round')) if not ok]
    ['square']
    """
    said = f"{desc.coarse} {detailed_sentence(described, desc.clauses)}"
    true = f"{coarse_sentence(shown)} {detailed_sentence(shown, desc.clauses)}"
    words = list(re.finditer(r"[a-z]+", said.lower()))
    other = re.findall(r"[a-z]+", true.lower())
    agree = [False] * len(words)
    matcher = difflib.SequenceMatcher(None, [m.group() for m in words], other, autojunk=False)
    for block in matcher.get_matching_blocks():
        for i in range(block.a, block.a + block.size):
            agree[i] = True
    return tuple((m.start(), m.end(), ok) for m, ok in zip(words, agree, strict=True)
                 if m.group() not in _FUNCTION_WORDS)  # fmt: skip


def consistent(described: Concept, named: frozenset[str], seen: Concept) -> bool:
    """Does `seen` have every attribute the description of `described` names?"""
    return all(getattr(described, a) == getattr(seen, a) for a in named)


def matches(described: Concept, named: frozenset[str], truth: PhotoTruth) -> bool:
    return any(consistent(described, named, o.concept) for o in truth.objects)


def seen_sentence(concept: Concept, truth: PhotoTruth) -> str:
    """The listener's reasoning: what it sees, complete, and where."""
    return f"{seen_object(concept)} {SCENE_PHRASES[truth.scene]}."


def seen_object(concept: Concept) -> str:
    """The reasoning's account of the object: "I see a red mug with blue stripes, ... and a star mark"."""
    body = describe(concept, random.Random(0), style="complete").detailed[4:-1]
    thing = f"{concept.colour} {concept.category}"
    body = body.replace(f"{thing} has ", f"{thing} with ", 1).replace(f"{thing} is plain", f"plain {thing}", 1)
    return f"I see {_article(concept.colour)} {body}"


def telling_phrases(a: Concept, b: Concept) -> tuple[str, str]:
    """What tells `a` from `b` in the listener's reasoning (`seen_object`): the words of `a`'s that `b`'s lacks,
    and `b`'s that `a`'s lacks (each the span from the first to the last differing word), to check which of
    the two a model's own "I see ..." names.

    >>> mug = Concept("mug", "red", "blue", "stripes", "square", "star")
    >>> telling_phrases(mug, replace(mug, mark="heart"))
    ('star', 'heart')
    >>> telling_phrases(mug, replace(mug, secondary="green"))
    ('blue stripes, a square blue', 'green stripes, a square green')
    >>> telling_phrases(mug, replace(mug, pattern="plain"))
    ('red mug with blue stripes,', 'plain red mug with')
    """
    words = [seen_object(c).split() for c in (a, b)]
    blocks = difflib.SequenceMatcher(None, *words, autojunk=False).get_opcodes()
    changed = [op for op in blocks if op[0] != "equal"]
    if not changed:
        return "", ""
    (_, a0, _, b0, _), (_, _, a1, _, b1) = changed[0], changed[-1]
    return " ".join(words[0][a0:a1]), " ".join(words[1][b0:b1])


@dataclass(frozen=True)
class Sample:
    """One training or evaluation sample: the runtime's messages, the photo, the answer in segments.

    Segments are tokenized one by one, as the runtime's steps are (a forced prefix, a chosen option, a
    generated field). For decisions, `segments[decision]` is the chosen option, `options` the choices and
    `label` the right one (what evaluation reads, as the runtime's `Choose` step does).
    """

    task: str
    messages: list[Message]
    image: Image.Image
    segments: tuple[str, ...]
    decision: int = -1
    options: tuple[str, ...] = ()
    label: int = -1
    prompt_spans: tuple[str, ...] = ()  # prompt text also trained on (a true description of the photo)
    # Recognition: the description as the prompt has it, and `word_checks` over it (spans within that text).
    checks_text: str = ""
    checks: tuple[tuple[int, int, bool], ...] = ()

    @property
    def target(self) -> str:
        return "".join(self.segments)


def _photo(rng: random.Random, in_frame: Sequence[Concept], size: int, **kw) -> tuple[Image.Image, PhotoTruth]:
    img, truth = render_photo(list(in_frame), rng.choice(SCENES), rng, size, **kw)
    if rng.random() < 0.5:  # library photos are JPEGs: learn through their artefacts too
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=truth.jpeg_quality)
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img, truth


REF = ImageRef(b"")  # prompts only need a placeholder; the sample carries the image itself


def speaker_sample(rng: random.Random, *, evaluation: bool = False, size: int = 224, p_casual: float = 0.5) -> Sample:
    concept = draw_concept(rng, evaluation=evaluation)
    img, truth = _photo(rng, [concept], size)
    desc = describe(concept, rng, style="casual" if rng.random() < p_casual else "complete", truth=truth)
    return caption_sample(concept.category, desc, img)


def caption_sample(category: str, desc: Description, img: Image.Image) -> Sample:
    """The speaker's task on `img` with `desc` as its answer, in the runtime's format."""
    segments = ("<coarse>", f"{desc.coarse}</coarse>", "\n<detailed>", f"{desc.detailed}</detailed>")
    return Sample("speaker", prompts.speaker(REF, category), img, segments)


def _negative(rng: random.Random, concept: Concept, hard: float, evaluation: bool) -> Concept:
    """What is in the photo instead of `concept`: a look-alike (probability `hard`) or another object."""
    if rng.random() < hard:
        return rng.choice(lookalikes(concept, rng))
    category = concept.category if rng.random() < 0.5 else rng.choice([c for c in CATEGORIES if c != concept.category])
    return draw_concept(rng, evaluation=evaluation, category=category)


def _decision_segments(rng: random.Random, answer: str, reasoning: str | None, p_reasoning: float) -> tuple:
    """The answer as the runtime's scripts write it: `{"Answer": "X"}` (tagging), with the reasoning first
    (`recognize(reasoning=True)`), or the answer first and then why (`tasks.explain`). Returns (segments,
    index of the answer segment)."""
    roll = rng.random()
    if reasoning is None or roll >= p_reasoning:
        return ('{"Answer": "', answer, '"}'), 1
    if roll < p_reasoning / 2:
        return reasoning_first(answer, reasoning)
    return ('{"Answer": "', answer, '", "Reasoning": "', reasoning + '"', "}"), 1


def reasoning_first(answer: str, reasoning: str) -> tuple[tuple[str, ...], int]:
    """`{"Reasoning": "...", "Answer": "X"}` in segments, and the index of the answer's segment."""
    return ('{"Reasoning": "', reasoning + '"', ', "Answer": "', answer, '"}'), 3


def recognition_sample(
    rng: random.Random,
    *,
    evaluation: bool = False,
    size: int = 224,
    hard: float = 0.7,
    p_casual: float = 0.3,
    p_reasoning: float = 0.25,
) -> Sample:
    concept = draw_concept(rng, evaluation=evaluation)
    positive = rng.random() < 0.5
    shown = concept if positive else _negative(rng, concept, hard, evaluation)
    in_frame = [shown] if rng.random() < 0.9 else []
    img, truth = _photo(rng, in_frame, size)
    desc = describe(concept, rng, style="casual" if rng.random() < p_casual else "complete", truth=truth)
    return _recognition(rng, concept, desc, img, truth, shown if in_frame else None, p_reasoning)


def _recognition(rng, concept, desc, img, truth, shown, p_reasoning) -> Sample:
    answer = prompts_yes(matches(concept, desc.named, truth))
    text = replace(desc.text(), name=rng.choice(NAMES), category=concept.category)
    reasoning = seen_sentence(shown, truth) if shown is not None else None
    segments, at = _decision_segments(rng, answer, reasoning, p_reasoning)
    # A matching description is also a caption of the photo: learning to predict it where it stands makes a
    # wrong word surprising, which the answer can then read (without it the yes/no role was not learned).
    # (The final period stays in the prompt's text: the tokenizer joins it with the newline after it.)
    spans = (" " + text.description().rstrip("."),) if answer == "Yes" and shown is not None else ()
    checks = word_checks(concept, desc, shown) if shown is not None else ()
    return Sample(
        "recognition", prompts.recognition(REF, text), img, segments, at, ("Yes", "No"), int(answer == "No"), spans,
        text.description(), checks,
    )  # fmt: skip


def recognition_pairs(
    rng: random.Random, *, evaluation: bool = False, size: int = 224, hard: float = 0.7, p_reasoning: float = 0.25
) -> list[Sample]:
    """Minimal pairs: one photo with the description of what it shows (Yes) and of a look-alike one attribute
    apart (No), or one description with a photo of the concept (Yes) and of the look-alike (No). Only the
    attribute changes between the two, so the gradient points at it (independent samples learn far slower)."""
    concept = draw_concept(rng, evaluation=evaluation)
    other = rng.choice(lookalikes(concept, rng)) if rng.random() < hard else _negative(rng, concept, 0.0, evaluation)
    style = "complete" if rng.random() < 0.8 else "casual"
    if rng.random() < 0.5:  # same photo, two descriptions
        img, truth = _photo(rng, [concept], size)
        seed = rng.random()  # both name the same clauses: the changed attribute is the only difference
        pair = [(c, describe(c, random.Random(seed), style=style, truth=truth)) for c in (concept, other)]
        return [_recognition(rng, c, d, img, truth, concept, p_reasoning) for c, d in pair]
    desc = describe(concept, rng, style=style)
    out = []
    for shown in (concept, other):
        img, truth = _photo(rng, [shown], size)
        out.append(_recognition(rng, concept, desc, img, truth, shown, p_reasoning))
    return out


@dataclass(frozen=True)
class Probe:
    """One recognition question of `listener_probes`: the description of `described`, a photo of `shown`."""

    kind: str  # "positive", "lookalike:<attribute>", "same category", "other category"
    described: Concept
    description: Description
    shown: Concept


def listener_probes(rng: random.Random, n: int) -> list[Probe]:
    """Per held-out concept, its complete description against a photo of itself, of each look-alike (one per
    attribute), of another concept of its category and of one of another category: which differences the
    yes/no listener sees (`bench/listener_probe.py`)."""
    out = []
    for _ in range(n):
        concept = draw_concept(rng, evaluation=True)
        desc = describe(concept, rng, style="complete")
        out.append(Probe("positive", concept, desc, concept))
        for look in lookalikes(concept, rng):
            (attribute,) = [a for a in ATTRIBUTES if getattr(look, a) != getattr(concept, a)]
            out.append(Probe(f"lookalike:{attribute}", concept, desc, look))
        other = rng.choice([c for c in CATEGORIES if c != concept.category])
        for kind, category in (("same category", concept.category), ("other category", other)):
            shown = draw_concept(rng, evaluation=True, category=category)
            while shown == concept:
                shown = draw_concept(rng, evaluation=True, category=category)
            out.append(Probe(kind, concept, desc, shown))
    return out


def paired_photos(probes: Sequence[Probe], seed: int, size: int = 224) -> list[tuple[Image.Image, PhotoTruth]]:
    """One photo per probe; the probes of one concept (consecutive, as `listener_probes` lists them) share one
    rng seed, hence the scene, the distractors and the object's size and tilt; where it lands and the light can
    still differ (placement retries depend on the object's outline), so the comparison is paired, not exact."""
    out, group = [], -1
    for probe in probes:
        group += probe.kind == "positive"
        rng = random.Random(seed * 100_003 + group)
        out.append(render_photo([probe.shown], rng.choice(SCENES), rng, size))
    return out


def prompts_yes(flag: bool) -> str:
    return "Yes" if flag else "No"


def identification_sample(
    rng: random.Random,
    *,
    evaluation: bool = False,
    size: int = 224,
    hard: float = 0.7,
    p_absent: float = 0.4,
    p_caption: float = 0.3,
) -> Sample:
    """K = 2-5 candidates (complete descriptions, look-alikes among them); the photo shows one of them or, when
    the None option is offered (half the samples), none of them with probability `p_absent`."""
    k = rng.randint(2, 5)
    first = draw_concept(rng, evaluation=evaluation)
    candidates = [first]
    while len(candidates) < k:
        c = _negative(rng, rng.choice(candidates), hard, evaluation)
        if c not in candidates:
            candidates.append(c)
    rng.shuffle(candidates)
    none_option = rng.random() < 0.5
    if none_option and rng.random() < p_absent:
        absent = _negative(rng, rng.choice(candidates), hard, evaluation)
        while absent in candidates:
            absent = _negative(rng, rng.choice(candidates), hard, evaluation)
        shown, answer_index = absent, len(candidates)
    else:
        answer_index = rng.randrange(k)
        shown = candidates[answer_index]
    img, truth = _photo(rng, [shown], size)
    names = rng.sample(NAMES, k)
    texts = [
        replace(describe(c, rng, style="complete").text(), name=n, category=c.category)
        for c, n in zip(candidates, names, strict=True)
    ]
    labels = (*prompts.letters(k), *((prompts.NONE,) if none_option else ()))
    messages = prompts.identification(REF, texts, none_option=none_option)
    if rng.random() < 0.15:  # `tasks.explain` after a tagging decision
        why = seen_sentence(shown, truth)
        segments = ('{"Answer": "', labels[answer_index], '", "Reasoning": "', why + '"', "}")
        return Sample("identification", messages, img, segments, 1, labels, answer_index)
    segments: tuple[str, ...] = ('{"Answer": "', labels[answer_index], '"')
    if rng.random() < p_caption:
        thing = f"{_article(shown.colour)} {shown.colour} {shown.category}"
        subject = f"<{names[answer_index]}>" if answer_index < k else thing
        segments += (', "Caption": "', f'{subject} {SCENE_PHRASES[truth.scene]}."')
    return Sample("identification", messages, img, (*segments, "}"), 1, labels, answer_index)


def question_sample(rng: random.Random, *, evaluation: bool = False, size: int = 224) -> Sample:
    """Open questions about one photo, with one personal concept in context."""
    concept = draw_concept(rng, evaluation=evaluation)
    present = rng.random() < 0.5
    shown = concept if present else _negative(rng, concept, 0.5, evaluation)
    img, truth = _photo(rng, [shown], size)
    name = rng.choice(NAMES)
    full = describe(concept, rng, style="complete")
    text = replace(full.text(), name=name, category=concept.category)
    place = SCENE_PHRASES[truth.scene]
    kind = rng.randrange(4)
    if kind == 0:
        q = f"Is <{name}> in this photo?"
        a = f"Yes, <{name}> is {place}." if present else f"No, I do not see <{name}>."
    elif kind == 1:
        q = f"Where is <{name}>?" if present else "Where was this photo taken?"
        a = f"<{name}> is {place}." if present else f"The photo was taken {place}."
    elif kind == 2:
        q = "What is in this photo?"
        what = f"<{name}>" if present else f"{_article(shown.colour)} {shown.colour} {shown.category}"
        a = f"{what[0].upper()}{what[1:]} {place}."
    else:
        q = "What colour is the object in this photo?"
        a = f"It is {shown.colour}."
    return Sample("question", prompts.question(REF, q, [text]), img, (a,))


BUILDERS = {
    "speaker": speaker_sample,
    "recognition": recognition_sample,
    "recognition_pairs": recognition_pairs,
    "identification": identification_sample,
    "question": question_sample,
}


def corpus_lines(n: int = 400, seed: int = 0) -> tuple[str, ...]:
    """Text the tokenizer should know whole: prompts and answers of every task, without rendering photos."""
    rng = random.Random(seed)
    lines = [prompts.SPEAKER_SYSTEM, prompts.LISTENER_SYSTEM, " ".join(ATTRIBUTES), " ".join(SCENE_PHRASES.values())]
    for i in range(n):
        concept = draw_concept(rng, evaluation=False)
        desc = describe(concept, rng, style="casual" if i % 2 else "complete")
        lines += [desc.coarse, desc.detailed, rng.choice(NAMES)]
        for m in prompts.speaker(REF, concept.category) + prompts.recognition(
            REF, replace(desc.text(), name=rng.choice(NAMES), category=concept.category)
        ):
            lines.extend(p for p in m.parts if isinstance(p, str))
    return tuple(lines)
