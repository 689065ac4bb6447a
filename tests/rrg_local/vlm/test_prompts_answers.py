"""The pure half of the runtime: prompt shapes, answer scripts, parsing, probabilities."""

import json

import numpy as np
import pytest

from rrg_local.vlm import answers, prompts
from rrg_local.vlm.protocol import Choice, Choose, Force, Generate, ImageRef, ScriptResult

IMG = ImageRef("photo.jpg")
BO = prompts.ConceptText("Bo", "dog", "A photo of a small dog", "The dog has a white patch over one eye.")


def test_speaker_prompt_asks_for_both_tags_and_forbids_context():
    msgs = prompts.speaker(IMG, "mug")
    user = msgs[-1]
    assert user.role == "user" and user.parts[0] is IMG
    text = user.parts[1]
    for needle in ("<coarse>", "</detailed>", '"A photo of a"', "background", "clothing", "mug"):
        assert needle in text


def test_listener_prompts_put_the_photo_before_the_concept():
    rec = prompts.recognition(IMG, BO)[-1]
    assert rec.parts[0] is IMG and "<Bo>" in rec.parts[1] and "white patch" in rec.parts[1]
    ident = prompts.identification(IMG, [BO, prompts.ConceptText("Rex", "dog")])[-1]
    assert ident.parts[0] is IMG
    assert "A. <Bo>, a dog" in ident.parts[1] and "B. <Rex>, a dog: no description" in ident.parts[1]
    q = prompts.question(None, "What is Bo doing?", [BO])[-1]
    assert q.parts == ("Personal concepts you know:\n- <Bo> (dog): " + BO.description() + "\nWhat is Bo doing?",)


def test_the_fixed_instructions_are_identical_across_concepts():
    a = prompts.recognition(IMG, BO)
    b = prompts.recognition(IMG, prompts.ConceptText("Mug", "mug"))
    assert a[0] == b[0] and a[1].parts[0] == b[1].parts[0]


def test_letters_bounds():
    assert prompts.letters(1) == ("A",)
    with pytest.raises(ValueError):
        prompts.letters(0)


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "<coarse>A photo of a mug</coarse>\n<detailed>The mug is red.</detailed>",
            ("A photo of a mug", "The mug is red."),
        ),
        ("<coarse>A  photo\nof a mug", ("A photo of a mug", "")),
        ("no tags at all", ("", "")),
    ],
)
def test_parse_description(text, expected):
    assert prompts.parse_description(text) == expected


def test_recognition_script_shapes():
    with_reason = answers.recognition_script()
    assert isinstance(with_reason[1], Generate) and with_reason[1].grammar == answers.STRING_BODY_GBNF
    assert with_reason[1].close == '"'
    assert [type(s) for s in answers.recognition_script(reasoning=False)] == [Force, Choose, Force]


def run_script_by_hand(steps, generated: list[str], picks: list[str]) -> ScriptResult:
    """What a model following the script produces, given the generated texts and picks."""
    result = ScriptResult()
    gen, pick = iter(generated), iter(picks)
    for step in steps:
        if isinstance(step, Force):
            out = step.text
        elif isinstance(step, Generate):
            out = next(gen)
        else:
            p = next(pick)
            out = Choice(p, {o: float(o == p) for o in step.options}, 1.0)
        result.outputs.append(out)
        result.text += out if isinstance(out, str) else out.picked
    return result


def test_scripts_always_produce_json_even_for_hostile_text():
    # Whatever the grammar admits (no quote, backslash or control characters) keeps the JSON valid.
    weird = "it's {a} [b]: 100% <Bo>, ünïcödé / ok"
    rec = run_script_by_hand(answers.recognition_script(), [weird + '"'], ["Yes"])
    parsed = answers.parse_recognition(rec)
    assert parsed.answer is True and parsed.reasoning == weird and parsed.p_yes == 1.0
    labels = prompts.letters(3)
    ident = run_script_by_hand(answers.identification_script(labels), ['r"', 'A photo of <Bo>."'], ["C"])
    assert json.loads(ident.text) == {"Reasoning": "r", "Answer": "C", "Caption": "A photo of <Bo>."}
    assert answers.parse_identification(ident, labels).label == "C"
    short = run_script_by_hand(answers.identification_script(labels, reasoning=False, caption=False), [], ["B"])
    assert json.loads(short.text) == {"Answer": "B"}


def test_malformed_answers_raise_one_clear_error():
    bad = ScriptResult(text='{"Answer": "Maybe"}')
    with pytest.raises(answers.MalformedAnswer, match="Yes or No"):
        answers.parse_recognition(bad)
    with pytest.raises(answers.MalformedAnswer, match="not JSON"):
        answers.parse_recognition(ScriptResult(text='{"Answer": "Ye'))
    with pytest.raises(answers.MalformedAnswer, match="one of A, B"):
        answers.parse_identification(ScriptResult(text='{"Answer": "Z"}'), ("A", "B"))


def test_option_probs_matches_a_direct_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 500).astype(np.float32)
    probs, mass = answers.option_probs(logits, [7, 42, 99])
    full = np.exp(logits.astype(np.float64) - logits.max())
    full /= full.sum()
    assert mass == pytest.approx(full[[7, 42, 99]].sum(), rel=1e-9)
    assert probs == pytest.approx(full[[7, 42, 99]] / full[[7, 42, 99]].sum(), rel=1e-9)
    with pytest.raises(ValueError):
        answers.option_probs(logits, [1, 1])


def test_option_probs_survives_underflow():
    probs, mass = answers.option_probs(np.array([1000.0, -1000.0, -1001.0]), [1, 2])
    assert mass == 0.0 and probs[0] > probs[1] and probs.sum() == pytest.approx(1.0)
