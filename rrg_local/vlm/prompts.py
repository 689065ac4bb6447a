"""The prompts, as pure functions of values: speaker, recognition, identification, open questions.

They follow the RRG paper (ARCHITECTURE.md, "RRG in one page"). Every prompt puts the fixed instructions
first, then the query photo, then what varies per concept, so that the runtime can keep the instructions
and the photo in its KV cache while a photo is checked against several concepts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rrg_local.vlm.protocol import ImageRef, Message


@dataclass(frozen=True)
class ConceptText:
    """What the model is told about a personal concept."""

    name: str
    category: str
    coarse: str = ""
    detailed: str = ""

    def description(self) -> str:
        return " ".join(p for p in (self.coarse, self.detailed) if p).strip()


SPEAKER_SYSTEM = (
    "You describe a personal object or person so that it can be told apart from similar ones. "
    "Look only at the subject itself."
)

LISTENER_SYSTEM = (
    "You are a careful visual assistant. You compare photos with descriptions of personal objects and people "
    "and answer in JSON."
)


def letters(n: int) -> tuple[str, ...]:
    """Option labels A, B, C, ... for n candidates.

    >>> letters(3)
    ('A', 'B', 'C')
    """
    if not 1 <= n <= 26:
        raise ValueError(f"between 1 and 26 candidates, not {n}")
    return tuple(chr(ord("A") + i) for i in range(n))


def speaker(image: ImageRef, category: str) -> list[Message]:
    """Ask for a coarse and a detailed description of the {category} in the photo."""
    instructions = (
        f"This photo shows a {category}. Describe this specific {category} so that someone could pick it out "
        f"among other {category}s that look similar.\n"
        f"First write a coarse description of 5 to 6 words between <coarse> and </coarse>, starting with "
        f'"A photo of a".\n'
        f'Then write one detailed sentence between <detailed> and </detailed>, starting with "The", naming 3 '
        f"to 4 visible attributes that distinguish it (colour, pattern, shape, parts, marks). Do not mention the "
        f"background, the location, the pose or what it is doing; for a person, do not mention clothing or "
        f"accessories."
    )
    return [
        Message.of("system", SPEAKER_SYSTEM),
        Message.of("user", image, instructions),
    ]


_TAG = re.compile(r"<(coarse|detailed)>(.*?)(?:</\1>|$)", re.S | re.I)


CAPTION_OPEN = "<coarse>"


def speaker_answer(coarse: str, detailed: str) -> str:
    """A description written as the speaker answers (what `parse_description` reads and a caption listener scores).

    >>> parse_description(speaker_answer("A photo of a red mug.", "The mug has a chip."))
    ('A photo of a red mug.', 'The mug has a chip.')
    """
    return f"{CAPTION_OPEN}{coarse}</coarse>\n<detailed>{detailed}</detailed>"


def parse_description(text: str) -> tuple[str, str]:
    """(coarse, detailed) from a speaker answer; tolerant of a missing closing tag, strict on content.

    >>> parse_description("<coarse>A photo of a red mug</coarse><detailed>The mug has a chip.</detailed>")
    ('A photo of a red mug', 'The mug has a chip.')
    """
    found = {m.group(1).lower(): " ".join(m.group(2).split()) for m in _TAG.finditer(text)}
    return found.get("coarse", ""), found.get("detailed", "")


def recognition(image: ImageRef, concept: ConceptText) -> list[Message]:
    """Is <name> in this photo? The concept's name and description come after the photo."""
    question = (
        f"Here is a personal {concept.category} called <{concept.name}>: {concept.description() or 'no description'}"
        f'\nIs <{concept.name}> in this photo? Answer in JSON with the keys "Reasoning" (one short sentence '
        f'about what you see) and "Answer" ("Yes" or "No").'
    )
    return [Message.of("system", LISTENER_SYSTEM), Message.of("user", image, question)]


NONE = "None"


def identification(image: ImageRef, candidates: Sequence[ConceptText], *, none_option: bool = False) -> list[Message]:
    """Which of K candidate concepts (labelled A, B, C...) is in the photo; the caption must name it.

    With `none_option`, "None" is also an answer (auto-tagging: most photos show none of the candidates).
    """
    labels = letters(len(candidates))
    listing = "\n".join(
        f"{label}. <{c.name}>, a {c.category}: {c.description() or 'no description'}"
        for label, c in zip(labels, candidates, strict=True)
    )
    if none_option:
        listing += f"\n{NONE}. none of these"
        labels = (*labels, NONE)
    question = (
        f'Which of these is in the photo?\n{listing}\nAnswer in JSON with the keys "Reasoning" (one short '
        f'sentence), "Answer" (one of {", ".join(labels)}) and "Caption" (one sentence describing the photo '
        f"that uses the chosen name in angle brackets)."
    )
    return [Message.of("system", LISTENER_SYSTEM), Message.of("user", image, question)]


def question(image: ImageRef | None, text: str, concepts: Sequence[ConceptText] = ()) -> list[Message]:
    """An open question about a photo, with the user's concepts in context (names in angle brackets)."""
    context = ""
    if concepts:
        context = "Personal concepts you know:\n" + "\n".join(
            f"- <{c.name}> ({c.category}): {c.description() or 'no description'}" for c in concepts
        )
        context += "\n"
    system = Message.of("system", LISTENER_SYSTEM.replace(" and answer in JSON", "") + " Answer briefly.")
    parts: list[str | ImageRef] = [image] if image is not None else []
    parts.append(f"{context}{text}".strip())
    return [system, Message("user", tuple(parts))]
