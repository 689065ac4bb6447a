"""The trainer's rewards, TRL-style: plain functions `fn(completions, **columns) -> list[float]`, one per completion.

The game rewards (`contrastive_reward`, `binary_reward`) live in `rrg_local.concepts.reward`, shared with the
runtime's description chooser, and are re-exported here; they score one game from the listener's
probabilities. This module adds the speaker's shape rewards (`format_reward`, `length_penalty`) and `combine`,
which sums weighted reward functions. The GRPO loop calls them; everything here is pure.

A completion is the speaker's text, or a TRL conversational completion (a list of messages, the last one's
"content" being the text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from rrg_local.concepts.reward import binary_reward, contrastive_reward
from rrg_local.vlm.prompts import parse_description

__all__ = ["binary_reward", "combine", "contrastive_reward", "format_reward", "length_penalty", "text_of"]

RewardFn = Callable[..., list[float]]

_FORMAT = re.compile(
    r"\s*<coarse>((?:(?!</?coarse>|</?detailed>).)+)</coarse>\s*"
    r"<detailed>((?:(?!</?coarse>|</?detailed>).)+)</detailed>\s*",
    re.S,
)
_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")

COARSE_WORDS = (6, 8)  # inclusive range for the coarse description
DETAILED_MIN_WORDS = 20


def text_of(completion: Any) -> str:
    """The text of a completion: a string, or the last message's content in a conversational one.

    >>> text_of("hi"), text_of([{"role": "assistant", "content": "there"}])
    ('hi', 'there')
    """
    return completion if isinstance(completion, str) else str(completion[-1]["content"])


def format_reward(completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 for exactly one non-empty `<coarse>...</coarse>` followed by one `<detailed>...</detailed>`, else 0.0.

    Only whitespace may surround or separate the two tags.

    >>> format_reward(["<coarse>A photo of a mug</coarse>\\n<detailed>The mug is red.</detailed>",
    ...                "<detailed>The mug is red.</detailed><coarse>A mug</coarse>",
    ...                "<coarse>a</coarse><coarse>b</coarse><detailed>c</detailed>"])
    [1.0, 0.0, 0.0]
    """
    return [float(_FORMAT.fullmatch(text_of(c)) is not None) for c in completions]


def count_sentences(text: str) -> int:
    """Sentences in `text`: runs of .!? followed by a space or the end; unterminated text counts as one.

    >>> count_sentences("The mug is red. It has a chip."), count_sentences("The mug"), count_sentences("")
    (2, 1, 0)
    """
    text = text.strip()
    if not text:
        return 0
    ends = len(_SENTENCE_END.findall(text))
    return ends + (0 if _SENTENCE_END.search(text[-1] + " ") else 1)


def length_penalty(
    completions: Sequence[Any], *, detailed_min_words: int = DETAILED_MIN_WORDS, **_: Any
) -> list[float]:
    """0 when coarse has 6-8 words and detailed is one sentence of 20+ words; negative otherwise.

    The penalty is the sum of three relative deviations: words outside the coarse range divided by its lower
    bound, missing detailed words divided by 20, and |sentences - 1| in the detailed part. A missing part
    counts as empty (0 words, 0 sentences): -(1 + 1 + 1) = -3 for no tags at all. `detailed_min_words`
    replaces the paper's 20 for a world whose complete descriptions are shorter: a minimum above what there
    is to say is paid for with padding (the demo speaker learned to append "on the street").

    >>> long = "The mug " + "is very red " * 6 + "today."
    >>> length_penalty([f"<coarse>A photo of a red mug</coarse><detailed>{long}</detailed>"])
    [0.0]
    >>> length_penalty(["<coarse>A red mug</coarse><detailed>The mug is red.</detailed>"])
    [-1.3]
    >>> length_penalty(["no tags"])
    [-3.0]
    >>> length_penalty(["<coarse>A photo of a red mug</coarse><detailed>The mug is red.</detailed>"],
    ...                detailed_min_words=4)
    [0.0]
    """
    low, high = COARSE_WORDS
    out = []
    for completion in completions:
        coarse, detailed = parse_description(text_of(completion))
        n_coarse = len(coarse.split())
        coarse_dev = max(0, low - n_coarse, n_coarse - high) / low
        detailed_dev = max(0, detailed_min_words - len(detailed.split())) / detailed_min_words
        sentence_dev = abs(count_sentences(detailed) - 1)
        out.append(-round(coarse_dev + detailed_dev + sentence_dev, 4) + 0.0)
    return out


def combine(*weighted: tuple[RewardFn, float]) -> RewardFn:
    """One reward function: the weighted sum of `(fn, weight)` pairs, every fn given the same columns.

    >>> fn = combine((format_reward, 1.0), (length_penalty, 0.5))
    >>> fn(["no tags"])
    [-1.5]
    """
    if not weighted:
        raise ValueError("combine needs at least one (reward function, weight) pair")

    def combined(completions: Sequence[Any], **columns: Any) -> list[float]:
        totals = [0.0] * len(completions)
        for fn, weight in weighted:
            scores = fn(completions, **columns)
            if len(scores) != len(completions):
                raise ValueError(
                    f"{getattr(fn, '__name__', fn)} returned {len(scores)} scores for {len(completions)} completions"
                )
            totals = [t + weight * s for t, s in zip(totals, scores, strict=True)]
        return totals

    combined.__name__ = "+".join(getattr(fn, "__name__", "reward") for fn, _ in weighted)
    return combined
