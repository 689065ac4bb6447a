"""The pure parts of concepts: retrieval, thresholds, calibration, rewards, routing, name matching."""

import numpy as np
import pytest

from rrg_local.concepts.ask import find_concepts, route
from rrg_local.concepts.reward import binary_reward, contrastive_reward
from rrg_local.concepts.store import Concept, name_key
from rrg_local.concepts.tagging import Prototype, TagConfig, calibrate, retrieve, stage1_threshold


def unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def proto(cid, vectors, threshold):
    c = Concept(cid, f"c{cid}", "dog", "", "", "none", None, 1)
    return Prototype(c, np.stack(vectors), threshold, frozenset())


@pytest.mark.parametrize(
    "probs,target,expected",
    [
        ([0.9, 0.05, 0.05], 0, 0.9),
        ([0.9, 0.05, 0.05], 1, 0.0),
        ([0.25, 0.1, 0.15], 0, 0.25),
        ([0.0, 0.0], 0, 0.0),
        ([0.5], 0, 1.0),
    ],
)
def test_contrastive_reward_table(probs, target, expected):
    assert contrastive_reward(probs, target) == pytest.approx(expected)


def test_binary_reward_and_empty_game():
    assert binary_reward([0.1, 0.2, 0.7], 2) == 1.0
    with pytest.raises(ValueError):
        contrastive_reward([], 0)


def test_retrieve_respects_each_threshold_and_k():
    protos = [
        proto(1, [unit(1, 0, 0)], 0.9),
        proto(2, [unit(0, 1, 0), unit(0.7, 0.7, 0)], 0.5),
        proto(3, [unit(0, 0, 1)], 0.1),
    ]
    q = unit(1, 0.2, 0)
    hits = retrieve(q, protos, k=3)
    assert [p.concept.id for p, _ in hits] == [1, 2]  # 3 is orthogonal: sim 0 < 0.1
    assert hits[0][1] == pytest.approx(float(unit(1, 0, 0) @ q))
    assert [p.concept.id for p, _ in retrieve(q, protos, k=1)] == [1]


def test_stage1_threshold_lets_every_reference_find_the_others():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cfg = TagConfig(stage1_margin=0.0, stage1_default=1.0, stage1_floor=-1.0)
    t = stage1_threshold(vecs, cfg)
    protos = [proto(1, list(np.delete(vecs, i, axis=0)), t) for i in range(5)]
    assert all(retrieve(vecs[i], [protos[i]], 1) for i in range(5))
    assert stage1_threshold(vecs[:1], TagConfig()) == TagConfig().stage1_default


def test_calibrate_separates_verdicts():
    # 0.55 and 0.835 both get 5 of 6 right (balanced accuracy 0.83): the cut nearer the default wins.
    assert calibrate([0.9, 0.85, 0.8], [0.82, 0.3, 0.2], 0.5) == pytest.approx(0.55)
    assert calibrate([0.9, 0.85, 0.8], [0.82, 0.3, 0.2], 0.8) == pytest.approx(0.835)
    assert calibrate([0.6, 0.7], [0.1, 0.2], 0.5) == 0.4  # any cut in (0.2, 0.6) separates; nearest the default


@pytest.mark.parametrize(
    "question,has_photo,target,intent,concepts,scene,year",
    [
        ("Is Bo in this photo?", True, "photo", "is_in", ("Bo",), None, None),
        ("is <bo> in the picture", True, "photo", "is_in", ("Bo",), None, None),
        ("What is Bo doing?", True, "photo", "open", ("Bo",), None, None),
        ("Show me photos of Bo", False, "library", "show", ("Bo",), None, None),
        ("Show me Bo at the beach", False, "library", "show", ("Bo",), "beach", None),
        ("When did I last see my blue mug?", False, "library", "last", ("blue mug",), None, None),
        ("Photos of Bo and grandma together", False, "library", "show", ("Bo", "grandma"), None, None),
        ("How many photos of GRANDMA in 2023?", False, "library", "count", ("grandma",), None, 2023),
        ("Show me Bobby", False, "library", "show", (), None, None),
    ],
)
def test_routing(question, has_photo, target, intent, concepts, scene, year):
    r = route(question, ["Bo", "blue mug", "grandma", "mug"], has_photo=has_photo)
    assert (r.target, r.intent, r.concepts, r.scene, r.year) == (target, intent, concepts, scene, year)


def test_longest_name_wins_and_names_are_case_insensitive():
    assert find_concepts("my BLUE MUG and the mug", ["mug", "blue mug"]) == ["blue mug", "mug"]
    assert name_key("<Blue Mug>") == name_key("blue mug")
