"""Trainer rewards: table-driven cases for the shape rewards, `combine`, and the re-exported game rewards."""

from __future__ import annotations

import doctest

import pytest

from rrg_local.concepts import reward as runtime_reward
from trainer import rewards

DETAILED = "The mug has a chipped rim, a faded blue stripe near the base, a dark stain inside and a thin crack."
GOOD = f"<coarse>A photo of a blue mug</coarse>\n<detailed>{DETAILED}</detailed>"


def test_doctests():
    assert doctest.testmod(rewards).failed == 0


def test_game_rewards_are_the_runtime_ones():
    assert rewards.contrastive_reward is runtime_reward.contrastive_reward
    assert rewards.binary_reward is runtime_reward.binary_reward


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (GOOD, 1.0),
        (f"  {GOOD}  ", 1.0),
        ([{"role": "assistant", "content": GOOD}], 1.0),
        ("<coarse>A photo of a mug</coarse>", 0.0),
        ("<detailed>The mug.</detailed><coarse>A photo of a mug</coarse>", 0.0),
        ("<coarse></coarse><detailed>The mug.</detailed>", 0.0),
        (f"Sure! {GOOD}", 0.0),
        (f"{GOOD}<detailed>again</detailed>", 0.0),
        ("<coarse>A <coarse>mug</coarse><detailed>The mug.</detailed>", 0.0),
        ("", 0.0),
    ],
)
def test_format_reward(completion, expected):
    assert rewards.format_reward([completion]) == [expected]


@pytest.mark.parametrize(
    ("coarse", "detailed", "expected"),
    [
        ("A photo of a blue mug", DETAILED, 0.0),  # 6 words; one 21-word sentence
        ("A photo of a big blue mug", DETAILED, 0.0),  # 7
        ("A photo of a very big blue mug", DETAILED, 0.0),  # 8
        ("A photo of a mug", DETAILED, -1 / 6),  # 5 words: one short of 6
        ("A photo of a very big old blue mug", DETAILED, -1 / 6),  # 9 words: one over 8
        ("A photo of a blue mug", "The mug is blue.", -16 / 20),  # 4 words: 16 missing
        ("A photo of a blue mug", f"{DETAILED} It is old and worn out, with a very long crack down its side.", -1.0),
        ("", "", -3.0),
    ],
)
def test_length_penalty(coarse, detailed, expected):
    text = f"<coarse>{coarse}</coarse><detailed>{detailed}</detailed>"
    assert rewards.length_penalty([text]) == [pytest.approx(expected, abs=1e-4)]


def test_combine_weights_and_passes_columns():
    seen = {}

    def target_reward(completions, target, **_):
        seen["target"] = target
        return [float(t) for t in target]

    fn = rewards.combine((rewards.format_reward, 2.0), (target_reward, -1.0))
    assert fn([GOOD, "x"], target=[1, 0]) == [1.0, 0.0]
    assert seen["target"] == [1, 0]
    assert fn.__name__ == "format_reward+target_reward"
    with pytest.raises(ValueError):
        rewards.combine((lambda completions, **_: [1.0], 1.0))([GOOD, GOOD])
    with pytest.raises(ValueError):
        rewards.combine()


def test_length_penalty_minimum_follows_the_config():
    from trainer.config import ConfigError, TrainConfig

    short = "<coarse>A photo of a red mug.</coarse><detailed>The red mug has blue stripes and a star mark.</detailed>"
    assert rewards.length_penalty([short]) == [pytest.approx(-10 / 20)]  # 10 words of the paper's 20
    assert rewards.length_penalty([short], detailed_min_words=13) == [pytest.approx(-3 / 13, abs=1e-4)]
    assert rewards.length_penalty([short], detailed_min_words=10) == [0.0]
    shaped = rewards.combine((rewards.format_reward, 1.0), (rewards.length_penalty, 1.0))
    assert shaped([short], detailed_min_words=10) == [1.0]  # the trainer passes it as a column
    assert TrainConfig(detailed_min_words=13).detailed_min_words == 13
    with pytest.raises(ConfigError, match="detailed_min_words"):
        TrainConfig(detailed_min_words=0)
