"""The demo model's samples: the runtime's prompts and answer formats, consistent labels, a real held-out split."""

from __future__ import annotations

import doctest
import json
import random
from dataclasses import replace

import pytest

from rrg_local.demo.attributes import Concept, describe_truth, lookalikes
from rrg_local.vlm import answers, prompts
from rrg_local.vlm.protocol import ScriptResult
from trainer import demo_tasks as dt

MUG = Concept("mug", "red", "blue", "stripes", "square", "star")


def test_complete_description_is_the_ground_truth():
    d = dt.describe(MUG, random.Random(0), style="complete")
    truth = describe_truth(MUG)
    assert f"<coarse>{d.coarse}</coarse> <detailed>{d.detailed}</detailed>" == truth
    assert d.named == {"category", "colour", "secondary", "pattern", "part", "mark"}


@pytest.mark.parametrize("seed", range(20))
def test_casual_descriptions_leave_attributes_out_and_add_context(seed):
    rng = random.Random(seed)
    concept = dt.draw_concept(rng, evaluation=False)
    img, truth = dt._photo(rng, [concept], 128)
    d = dt.describe(concept, rng, style="casual", truth=truth)
    assert {"category", "colour"} <= d.named < set(concept.attributes())
    context = ("beach", "grass", "kitchen", "snow", "living room", "street", "left", "right", "middle", "hidden")
    assert any(w in d.detailed for w in context)
    # Every attribute the text names is the concept's, and a look-alike differing in an unnamed one matches.
    for other in dt.lookalikes(concept, rng):
        (changed,) = [a for a in concept.attributes() if getattr(other, a) != getattr(concept, a)]
        assert dt.consistent(concept, d.named, other) == (changed not in d.named)


def test_held_out_split_is_stable_and_about_one_in_eight():
    rng = random.Random(1)
    drawn = [dt.draw_concept(rng, evaluation=False) for _ in range(300)]
    assert not any(map(dt.held_out, drawn))
    assert all(dt.held_out(dt.draw_concept(rng, evaluation=True)) for _ in range(50))
    share = sum(dt.held_out(dt.random_concept(rng)) for _ in range(4000)) / 4000
    assert 0.09 < share < 0.16


@pytest.mark.parametrize("seed", range(12))
def test_recognition_sample_speaks_the_runtime_protocol(seed):
    s = dt.recognition_sample(random.Random(seed), size=96, p_reasoning=0.5)
    assert s.messages[0].parts[0] == prompts.LISTENER_SYSTEM
    data = json.loads(s.target)  # the answer the runtime's script parses
    assert data["Answer"] == s.options[s.label] == s.segments[s.decision]
    forced = "".join(s.segments[: s.decision])
    assert forced.endswith('"Answer": "') and s.segments[s.decision + 1] in ('"}', '", "Reasoning": "')
    assert answers.parse_recognition(ScriptResult(text=s.target)).answer == (s.label == 0)


def test_recognition_pairs_differ_in_one_thing_and_mostly_flip_the_answer():
    import re

    rng, flips = random.Random(0), 0
    for _ in range(30):
        a, b = dt.recognition_pairs(rng, size=96, hard=1.0)
        texts = [re.sub(r"<\w+>", "<X>", s.messages[-1].parts[-1]) for s in (a, b)]
        assert (a.image.tobytes() == b.image.tobytes()) != (texts[0] == texts[1])  # photo or text is shared
        assert a.label == 0  # the first always matches
        flips += b.label == 1
    assert flips >= 24  # the second flips unless a casual description left the changed attribute out


def test_recognition_label_is_consistency_with_what_the_photo_shows():
    rng = random.Random(5)
    seen = {0: 0, 1: 0}
    for _ in range(60):
        s = dt.recognition_sample(rng, size=96, hard=1.0)
        seen[s.label] += 1
    assert seen[0] > 10 and seen[1] > 10  # both answers occur with look-alike negatives


@pytest.mark.parametrize("seed", range(12))
def test_identification_sample_has_one_right_label(seed):
    s = dt.identification_sample(random.Random(seed), size=96)
    data = json.loads(s.target)
    assert data["Answer"] == s.options[s.label]
    text = s.messages[-1].parts[-1]
    for label in s.options:
        assert f"{label}. " in text
    if "Caption" in data and data["Answer"] != prompts.NONE:
        assert "<" in data["Caption"]


def test_speaker_sample_matches_the_describe_script():
    s = dt.speaker_sample(random.Random(2), size=96)
    assert s.segments[0] == "<coarse>" and s.segments[2] == "\n<detailed>"
    coarse, detailed = prompts.parse_description(s.target)
    assert coarse.startswith("A photo of") and detailed.startswith("The ")


def test_seen_sentence_reads_naturally():
    sentence = dt.seen_sentence(MUG, replace(dt._photo(random.Random(0), [MUG], 96)[1], scene="beach"))
    assert sentence == "I see a red mug with blue stripes, a square blue handle and a star mark on the beach."


def test_corpus_covers_the_world_vocabulary():
    text = " ".join(dt.corpus_lines(n=200))
    for word in ("teddy", "backpack", "cactus", "spoked", "checks", "diamond", "teal", "snout"):
        assert word in text


def test_paired_photos_show_each_concepts_probes_in_one_layout():
    probes = dt.listener_probes(random.Random(5), 6)
    photos = dt.paired_photos(probes, seed=5, size=96)
    assert len(photos) == len(probes)
    layouts = []
    for probe, (img, truth) in zip(probes, photos, strict=True):
        (main,) = [o for o in truth.objects if not o.is_distractor]
        assert main.concept == probe.shown and img.size == (96, 96)
        others = tuple(o.concept for o in truth.objects if o.is_distractor)
        layout = (truth.scene, main.scale, main.angle, others)
        if probe.kind == "positive":
            layouts.append(layout)
        else:  # its concept's own photo's scene, size, tilt and distractors (the place may move: the outline differs)
            assert layout == layouts[-1]
    assert len(set(layouts)) == len(layouts) == 6  # but every concept gets its own


def test_listener_probes_differ_from_the_described_concept_as_their_kind_says():
    probes = dt.listener_probes(random.Random(3), 30)
    kinds = {p.kind for p in probes}
    assert kinds == {"positive", "same category", "other category"} | {f"lookalike:{a}" for a in dt.ATTRIBUTES}
    for p in probes:
        assert dt.held_out(p.described)  # its look-alikes may be trained concepts, as in the runtime
        assert dt.consistent(p.described, p.description.named, p.shown) == (p.kind == "positive")
        changed = [a for a in ("category", *dt.ATTRIBUTES) if getattr(p.shown, a) != getattr(p.described, a)]
        if p.kind.startswith("lookalike:"):
            assert changed == [p.kind.split(":")[1]]
        elif p.kind == "same category":
            assert changed and "category" not in changed
        elif p.kind == "other category":
            assert "category" in changed


def test_telling_phrases_name_each_lookalikes_change_on_its_side():
    rng = random.Random(4)
    for _ in range(60):
        concept = dt.draw_concept(rng, evaluation=False)
        for attribute, look in zip(dt.ATTRIBUTES, lookalikes(concept, rng), strict=True):
            mine, theirs = dt.telling_phrases(concept, look)
            assert mine and theirs and mine != theirs
            assert mine in dt.seen_object(concept) and theirs in dt.seen_object(look)
            if attribute != "part":  # a part's value is a shape ("double"), its phrase says "two ... pockets"
                assert getattr(concept, attribute) in mine
                assert getattr(look, attribute) in theirs
    assert dt.telling_phrases(MUG, MUG) == ("", "")


def test_demo_tasks_doctests_pass():
    result = doctest.testmod(dt)
    assert result.attempted >= 8 and result.failed == 0
