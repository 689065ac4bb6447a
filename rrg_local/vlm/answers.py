"""Structured answers: the step scripts that make them, their parsing, and reading probabilities (pure).

Answers are built, not hoped for: the JSON punctuation is forced text, each free-text field is sampled
under a grammar that only admits characters legal inside a JSON string (no quote, backslash or control
character), and the answer itself is a `Choose` step whose probabilities come from the logits at exactly
that token. So the result always parses, and P(Yes) is a direct read of the answer token's distribution.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rrg_local.vlm.protocol import Choice, Choose, Force, Generate, ScriptResult, Step

# A JSON string body and its closing quote. Plain text only: no escapes needed, any prefix is valid.
STRING_BODY_GBNF = 'root ::= [^"\\\\\\x00-\\x1f]* "\\""'
YES, NO = "Yes", "No"


class MalformedAnswer(ValueError):
    """The model's output could not be read as the expected answer."""


@dataclass(frozen=True)
class Recognition:
    answer: bool
    p_yes: float
    reasoning: str
    raw: str


@dataclass(frozen=True)
class Identification:
    label: str
    probs: dict[str, float]
    reasoning: str
    caption: str
    raw: str


def option_probs(logits: np.ndarray, option_tokens: Sequence[int]) -> tuple[np.ndarray, float]:
    """Softmax of the full logits, read at each option's first token, renormalised over the options.

    Returns (probs, mass): mass is how much of the distribution the options held before renormalising.

    >>> p, mass = option_probs(np.array([2.0, 0.0, -50.0]), [0, 1])
    >>> [round(float(x), 4) for x in p], round(mass, 4)
    ([0.8808, 0.1192], 1.0)
    """
    if len(set(option_tokens)) != len(option_tokens):
        raise ValueError("options must start with different tokens")
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max()
    log_z = top + np.log(np.exp(logits - top).sum())
    picked = np.exp(logits[list(option_tokens)] - log_z)
    mass = float(picked.sum())
    if mass <= 0.0:  # every option underflowed: fall back to the logits among themselves
        sub = logits[list(option_tokens)]
        picked = np.exp(sub - sub.max())
        return picked / picked.sum(), 0.0
    return picked / mass, mass


def _field(name: str, *, first: bool, max_tokens: int) -> list[Step]:
    return [
        Force(("{" if first else ", ") + f'"{name}": "'),
        Generate(max_tokens=max_tokens, grammar=STRING_BODY_GBNF, close='"'),
    ]


def recognition_script(*, reasoning: bool = True, max_reasoning_tokens: int = 96) -> list[Step]:
    """{"Reasoning": "...", "Answer": "Yes|No"}, or {"Answer": "Yes|No"} when reasoning is off (one forward pass)."""
    steps: list[Step] = _field("Reasoning", first=True, max_tokens=max_reasoning_tokens) if reasoning else []
    steps += [Force(('{"' if not reasoning else ', "') + 'Answer": "'), Choose((YES, NO)), Force('"}')]
    return steps


def identification_script(
    labels: Sequence[str], *, reasoning: bool = True, caption: bool = True, max_tokens: int = 96
) -> list[Step]:
    """{"Reasoning": ..., "Answer": "A|B|...", "Caption": ...}; fields can be dropped for speed."""
    steps: list[Step] = _field("Reasoning", first=True, max_tokens=max_tokens) if reasoning else []
    steps += [Force(('{"' if not reasoning else ', "') + 'Answer": "'), Choose(tuple(labels)), Force('"')]
    if caption:
        steps += _field("Caption", first=False, max_tokens=max_tokens)
    steps.append(Force("}"))
    return steps


def _load(raw: str) -> dict:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"model output is not JSON ({exc.msg} at {exc.pos}): {raw[:80]!r}") from exc
    if not isinstance(data, dict):
        raise MalformedAnswer(f"model output is not a JSON object: {raw[:80]!r}")
    return data


def parse_recognition(result: ScriptResult) -> Recognition:
    data = _load(result.text)
    choice = result.choices[0] if result.choices else None
    answer = data.get("Answer")
    if answer not in (YES, NO):
        raise MalformedAnswer(f"recognition answer must be Yes or No, got {answer!r}")
    p_yes = choice.probs[YES] if choice else (1.0 if answer == YES else 0.0)
    return Recognition(answer=answer == YES, p_yes=p_yes, reasoning=str(data.get("Reasoning", "")), raw=result.text)


def parse_identification(result: ScriptResult, labels: Sequence[str]) -> Identification:
    data = _load(result.text)
    label = data.get("Answer")
    if label not in labels:
        raise MalformedAnswer(f"identification answer must be one of {', '.join(labels)}, got {label!r}")
    choice: Choice | None = result.choices[0] if result.choices else None
    probs = choice.probs if choice else {x: float(x == label) for x in labels}
    return Identification(
        label=label,
        probs=probs,
        reasoning=str(data.get("Reasoning", "")),
        caption=str(data.get("Caption", "")),
        raw=result.text,
    )
