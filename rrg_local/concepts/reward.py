"""The reference-game reward (RRG), as pure functions. The trainer and the description chooser both use it.

A game: a description, candidate photos (one target, the rest hard negatives), and the listener's
P(Yes | photo, description) for each. Rewards take those probabilities and the target's index.
"""

from __future__ import annotations

from collections.abc import Sequence

SOFT_GATE = 0.3


def contrastive_reward(probs: Sequence[float], target: int, *, gate: float = SOFT_GATE) -> float:
    """pi_target / sum(pi) when the listener's guess is the target, else 0; halved when max(pi) < gate.

    >>> contrastive_reward([0.8, 0.1, 0.1], 0)
    0.8
    >>> round(contrastive_reward([0.2, 0.05, 0.05], 0), 4)  # right guess, but the listener is unsure
    0.3333
    >>> contrastive_reward([0.1, 0.8, 0.1], 0)
    0.0
    """
    if not probs:
        raise ValueError("a game needs at least one candidate")
    guess = max(range(len(probs)), key=lambda i: probs[i])
    if guess != target:
        return 0.0
    total = sum(probs)
    reward = probs[target] / total if total > 0 else 0.0
    return reward / 2 if max(probs) < gate else reward


def binary_reward(probs: Sequence[float], target: int) -> float:
    """1 when the listener's guess is the target, else 0 (the ablation baseline).

    >>> binary_reward([0.4, 0.6], 1), binary_reward([0.4, 0.6], 0)
    (1.0, 0.0)
    """
    return float(max(range(len(probs)), key=lambda i: probs[i]) == target)
