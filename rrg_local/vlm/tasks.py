"""What the product asks of a vision-language model: describe, recognize, identify, answer, score a caption.

Each task is a prompt (`prompts`) plus a step script (`answers`) run on any `VisionModel`, then parsed.
Callers (concepts, tagging, the CLI, the TUI) use these and never build prompts themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rrg_local.vlm import answers, prompts
from rrg_local.vlm.prompts import ConceptText
from rrg_local.vlm.protocol import Force, Generate, ImageRef, OnText, Score, Scored, VisionModel

# The tags' contents: anything but a tag opener or a newline, then the closing tag.
_TAG_BODY = 'root ::= [^<\\n]* "</{tag}>"'


@dataclass(frozen=True)
class Description:
    coarse: str
    detailed: str
    raw: str


def describe(
    model: VisionModel,
    image: ImageRef,
    category: str,
    *,
    temperature: float = 0.0,
    seed: int = 0,
    max_tokens: int = 80,
) -> Description:
    """The speaker: a coarse and a detailed description, the tags guaranteed by the script."""
    steps = [
        Force("<coarse>"),
        Generate(
            max_tokens=max_tokens // 4,
            grammar=_TAG_BODY.format(tag="coarse"),
            temperature=temperature,
            close="</coarse>",
        ),
        Force("\n<detailed>"),
        Generate(
            max_tokens=max_tokens,
            grammar=_TAG_BODY.format(tag="detailed"),
            temperature=temperature,
            close="</detailed>",
        ),
    ]
    result = model.run(prompts.speaker(image, category), steps, seed=seed, role="speaker")
    coarse, detailed = prompts.parse_description(result.text)
    return Description(coarse=coarse, detailed=detailed, raw=result.text)


def recognize(
    model: VisionModel, image: ImageRef, concept: ConceptText, *, reasoning: bool = True
) -> answers.Recognition:
    """Is the concept in the photo? With `reasoning=False` it costs one forward pass (no sampling)."""
    result = model.run(prompts.recognition(image, concept), answers.recognition_script(reasoning=reasoning))
    return answers.parse_recognition(result)


def caption_likelihood(model: VisionModel, image: ImageRef, concept: ConceptText) -> Scored:
    """The listener as a captioner: log P(the concept's description | photo), the description scored as the
    speaker's answer on this photo (one forward pass over its tokens, the photo cached). Whatever the speaker
    sees, this listener sees, with no yes/no role to learn; compare scores of one description across photos."""
    answer = prompts.speaker_answer(concept.coarse, concept.detailed).removeprefix(prompts.CAPTION_OPEN)
    result = model.run(prompts.speaker(image, concept.category), [Force(prompts.CAPTION_OPEN), Score(answer)])
    return result.scores[0]


def identify(
    model: VisionModel,
    image: ImageRef,
    candidates: Sequence[ConceptText],
    *,
    reasoning: bool = True,
    caption: bool = True,
    none_option: bool = False,
) -> answers.Identification:
    """Which of the candidates (A, B, C, ...; or "None") is in the photo, with the probability of each label."""
    labels = prompts.letters(len(candidates)) + ((prompts.NONE,) if none_option else ())
    script = answers.identification_script(labels, reasoning=reasoning, caption=caption)
    msgs = prompts.identification(image, candidates, none_option=none_option)
    return answers.parse_identification(model.run(msgs, script), labels)


def explain(model: VisionModel, messages, answer: str, *, max_tokens: int = 48) -> str:
    """The reasoning behind an answer already given: one more run that reuses the cached prompt."""
    steps = [
        Force(f'{{"Answer": "{answer}", "Reasoning": "'),
        Generate(max_tokens=max_tokens, grammar=answers.STRING_BODY_GBNF, close='"'),
    ]
    return model.run(messages, steps).outputs[1].rstrip('"')


def ask(
    model: VisionModel,
    image: ImageRef | None,
    question: str,
    concepts: Sequence[ConceptText] = (),
    *,
    on_text: OnText | None = None,
    max_tokens: int = 200,
) -> str:
    """An open answer, streamed through `on_text` as it is generated."""
    result = model.run(prompts.question(image, question, concepts), [Generate(max_tokens=max_tokens)], on_text=on_text)
    return result.text.strip()
