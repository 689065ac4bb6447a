"""Demo-world concepts: one personal object as a frozen set of visible attributes, its look-alikes, its truth text.

A `Concept` is a fixed identity (my red striped mug with a square handle and a star); every photo of it
shows exactly these attributes, and nothing else about a photo (scene, pose, light) belongs to it.
`lookalikes` gives the hard negatives: same category, exactly one attribute changed. `describe_truth` is the
ground-truth coarse + detailed description, a later target for captioning. Everything here is pure.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace

CATEGORIES = ("mug", "teddy bear", "ball", "toy car", "backpack", "plant pot")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 210, 40),
    "green": (50, 160, 60),
    "blue": (40, 90, 210),
    "purple": (130, 60, 180),
    "pink": (240, 130, 180),
    "brown": (130, 80, 40),
    "white": (240, 240, 240),
    "black": (35, 35, 35),
    "teal": (30, 160, 160),
}
PATTERNS = ("plain", "stripes", "dots", "checks")
MARKS = ("star", "heart", "moon", "diamond")
# Each category's distinguishing part and its variants; drawn large (a quarter to a third of the object).
PARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mug": ("handle", ("round", "square", "triangular")),
    "teddy bear": ("ears", ("round", "pointed", "floppy")),
    "ball": ("seams", ("band", "cross", "curved")),
    "toy car": ("wheels", ("solid", "spoked", "big")),
    "backpack": ("pocket", ("round", "square", "double")),
    "plant pot": ("leaves", ("round", "pointy", "cactus")),
}
ATTRIBUTES = ("colour", "secondary", "pattern", "part", "mark")


@dataclass(frozen=True)
class Concept:
    """One personal object: its category and the visible attributes every photo of it shows."""

    category: str
    colour: str
    secondary: str
    pattern: str
    part: str
    mark: str

    @property
    def slug(self) -> str:
        """A filesystem-safe id unique to the identity, e.g. `mug-red-blue-stripes-square-star`."""
        return "-".join(v.replace(" ", "_") for v in asdict(self).values())

    def attributes(self) -> dict[str, str]:
        return asdict(self)


def _choices(attribute: str, category: str) -> tuple[str, ...]:
    if attribute in ("colour", "secondary"):
        return tuple(COLOURS)
    if attribute == "pattern":
        return PATTERNS
    if attribute == "mark":
        return MARKS
    return PARTS[category][1]


def is_valid(concept: Concept) -> bool:
    """Known values, and a secondary colour that differs from the main one (else parts would vanish)."""
    return (
        concept.category in CATEGORIES
        and concept.colour != concept.secondary
        and all(getattr(concept, a) in _choices(a, concept.category) for a in ATTRIBUTES)
    )


def random_concept(rng: random.Random, category: str | None = None) -> Concept:
    """A random valid concept (of `category` when given); pure given the rng state."""
    category = category or rng.choice(CATEGORIES)
    colour, secondary = rng.sample(list(COLOURS), 2)
    return Concept(
        category, colour, secondary, rng.choice(PATTERNS), rng.choice(PARTS[category][1]), rng.choice(MARKS)
    )


def lookalikes(concept: Concept, rng: random.Random) -> list[Concept]:
    """One hard negative per attribute: same category, exactly that attribute changed to another valid value."""
    out = []
    for attribute in ATTRIBUTES:
        current = getattr(concept, attribute)
        options = [v for v in _choices(attribute, concept.category) if v != current]
        options = [v for v in options if is_valid(replace(concept, **{attribute: v}))]
        out.append(replace(concept, **{attribute: rng.choice(options)}))
    return out


def differing_attributes(a: Concept, b: Concept) -> list[str]:
    """Names of the attributes (category included) where `a` and `b` differ."""
    return [k for k, v in a.attributes().items() if getattr(b, k) != v]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _part_phrase(concept: Concept) -> str:
    """The part variant together with where the secondary colour shows, so every attribute is named."""
    variant, second = concept.part, concept.secondary
    if concept.category == "mug":
        return f"{_article(variant)} {variant} {second} handle"
    if concept.category == "teddy bear":
        return f"{variant} ears, {_article(second)} {second} snout"
    if concept.category == "ball":
        return {"band": f"{_article(second)} {second} band", "cross": f"crossed {second} seams"}.get(
            variant, f"curved {second} seams"
        )
    if concept.category == "toy car":
        return f"{variant} wheels, {second} windows"
    if concept.category == "backpack":
        if variant == "double":
            return f"two {second} front pockets"
        return f"{_article(variant)} {variant} {second} front pocket"
    leaves = "a cactus" if variant == "cactus" else f"{variant} leaves"
    return f"{leaves}, {_article(second)} {second} rim"


# What a detailed description can say beside colour and category, in this order.
CLAUSES = ("surface", "part", "mark")


def coarse_sentence(concept: Concept) -> str:
    return f"A photo of {_article(concept.colour)} {concept.colour} {concept.category}."


def detailed_sentence(concept: Concept, clauses: tuple[str, ...] | list[str] = CLAUSES) -> str:
    """The detailed sentence saying `clauses` of `concept`, without its final period.

    >>> detailed_sentence(Concept("mug", "red", "blue", "plain", "square", "star"), ["surface", "mark"])
    'The red mug is plain with a star mark'
    """
    phrases = []
    for clause in clauses:
        if clause == "surface":
            phrases.append("plain" if concept.pattern == "plain" else f"{concept.secondary} {concept.pattern}")
        elif clause == "part":
            phrases.append(_part_phrase(concept))
        else:
            phrases.append(f"{_article(concept.mark)} {concept.mark} mark")
    body = _listing(phrases)
    verb = "is" if phrases[0] == "plain" else "has"
    if phrases[0] == "plain" and len(phrases) > 1:
        body = "plain with " + _listing(phrases[1:])
    return f"The {concept.colour} {concept.category} {verb} {body}"


def _listing(phrases: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def describe_truth(concept: Concept) -> str:
    r"""The ground-truth description: `<coarse>` names colour and category, `<detailed>` the 3-4 distinguishing
    attributes; no scene, pose or light.

    >>> print(describe_truth(Concept("mug", "red", "blue", "stripes", "square", "star")).replace("> <", ">\n<"))
    <coarse>A photo of a red mug.</coarse>
    <detailed>The red mug has blue stripes, a square blue handle and a star mark.</detailed>
    >>> print(describe_truth(Concept("ball", "red", "blue", "plain", "band", "moon")).split("> <")[1])
    detailed>The red ball is plain with a blue band and a moon mark.</detailed>
    """
    return f"<coarse>{coarse_sentence(concept)}</coarse> <detailed>{detailed_sentence(concept)}.</detailed>"


def read_attributes(category: str, text: str) -> dict[str, str | None]:
    """What a description in the world's words says of an object of `category`: each attribute's value as
    named in `text`, None where it names none (how descriptions are scored against the truth).

    >>> mug = Concept("mug", "red", "blue", "stripes", "square", "star")
    >>> read_attributes("mug", describe_truth(mug)) == {k: v for k, v in mug.attributes().items() if k != "category"}
    True
    >>> read_attributes("ball", "A photo of a teal ball. The teal ball is plain with a moon mark.")["pattern"]
    'plain'
    """
    low = f" {text.lower()} "
    found: dict[str, str | None] = dict.fromkeys(ATTRIBUTES)
    found["colour"] = next((c for c in COLOURS if f" {c} {category}" in low), None)
    found["pattern"] = "plain" if " is plain" in low else next((p for p in PATTERNS[1:] if f" {p}" in low), None)
    for variant in PARTS[category][1]:
        for second in COLOURS:
            probe = Concept(category, "red", second, "plain", variant, "star")
            if f" {_part_phrase(probe)}" in low:
                found["part"], found["secondary"] = variant, second
    if found["secondary"] is None and found["pattern"] not in (None, "plain"):
        found["secondary"] = next((c for c in COLOURS if f" {c} {found['pattern']}" in low), None)
    found["mark"] = next((m for m in MARKS if f" {m} mark" in low), None)
    return found
