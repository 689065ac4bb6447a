"""Benchmark loading, the concept split and hard-example mining, on generated JPEGs and a pixel embedding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import draw_photo
from trainer import data

# concept -> (category, seeds of its photos). Every seed is an unrelated picture: the tests check the mining
# rule against a brute-force version of it, not that the pixel embedding groups a concept's photos.
LAYOUT = {
    "rex": ("dog", [1, 2, 3]),
    "fido": ("dog", [4, 5]),
    "spot": ("dog", [6, 7]),
    "tom": ("cat", [8, 9]),
    "mug": ("cup", [10]),
}


def write_benchmark(root: Path) -> Path:
    for concept, (_, seeds) in LAYOUT.items():
        (root / concept).mkdir(parents=True)
        for s in seeds:
            draw_photo(s, (64, 48)).save(root / concept / f"{s:03d}.jpg", "JPEG", quality=90)
    (root / "notes.txt").write_text("not a concept folder")
    (root / "rex" / "readme.txt").write_text("not an image")
    return root


def pixel_embedding(path: Path) -> np.ndarray:
    """A normalised 8x6 downsample: similar pictures are close, which is all mining needs."""
    with Image.open(path) as im:
        vec = np.asarray(im.convert("RGB").resize((8, 6)), dtype=np.float32).ravel() - 127.5
    return vec / np.linalg.norm(vec)


@pytest.fixture
def bench(tmp_path) -> Path:
    return write_benchmark(tmp_path / "bench")


@pytest.mark.parametrize("fmt", ["json", "csv", "csv-header"])
def test_load_examples_reads_the_layout_and_categories(bench, tmp_path, fmt):
    cats = {c: cat for c, (cat, _) in LAYOUT.items()}
    if fmt == "json":
        path = tmp_path / "cats.json"
        path.write_text(json.dumps(cats))
    else:
        path = tmp_path / "cats.csv"
        header = "concept,category\n" if fmt == "csv-header" else ""
        path.write_text(header + "".join(f"{c},{cat}\n" for c, cat in cats.items()))
    examples = data.load_examples(bench, path)
    assert len(examples) == sum(len(s) for _, s in LAYOUT.values())
    assert examples[0] == data.Example("fido", "dog", bench / "fido" / "004.jpg")
    assert {(e.concept, e.category) for e in examples} == {(c, cat) for c, cat in cats.items()}


def test_load_examples_needs_every_category(bench):
    with pytest.raises(ValueError, match="mug"):
        data.load_examples(bench, {c: cat for c, (cat, _) in LAYOUT.items() if c != "mug"})


def test_split_is_by_concept_and_seeded(bench):
    examples = data.load_examples(bench, {c: cat for c, (cat, _) in LAYOUT.items()})
    train, test = data.split_by_concept(examples, test_fraction=0.4, seed=3)
    assert {e.concept for e in train}.isdisjoint({e.concept for e in test})
    assert len({e.concept for e in test}) == 2 and len(train) + len(test) == len(examples)
    assert data.split_by_concept(examples, test_fraction=0.4, seed=3) == (train, test)
    splits = {tuple(sorted({e.concept for e in data.split_by_concept(examples, 0.4, s)[1]})) for s in range(10)}
    assert len(splits) > 1


def brute_force_game(examples, vectors, i, k, first=()):
    """The mining rule written out directly, to check `mine_games` against (`first`: the target's look-alikes)."""
    sims = vectors @ vectors[i]
    t = examples[i]
    same = [j for j, e in enumerate(examples) if e.concept == t.concept and j != i]
    positive = min(same, key=lambda j: sims[j]) if same else i
    others = {}
    for j, e in enumerate(examples):
        if e.concept != t.concept and (e.concept not in others or sims[j] > sims[others[e.concept]]):
            others[e.concept] = j
    ranked = sorted(
        others.values(), key=lambda j: (examples[j].concept not in first, examples[j].category != t.category, -sims[j])
    )
    return examples[positive], {examples[j] for j in ranked[: k - 1]}


@pytest.mark.parametrize("k", [2, 3, 4])
def test_mine_games_picks_hard_positives_and_negatives(bench, k):
    examples = data.load_examples(bench, {c: cat for c, (cat, _) in LAYOUT.items()})
    games = data.mine_games(examples, pixel_embedding, k=k, seed=0)
    vectors = np.stack([pixel_embedding(e.path) for e in examples])
    assert [g.target for g in games] == examples
    for i, game in enumerate(games):
        positive, negatives = brute_force_game(examples, vectors, i, k)
        assert len(game.candidates) == k and game.candidates[game.answer] == positive
        assert set(game.candidates) - {positive} == negatives
        assert all(c.concept != game.target.concept for c in negatives)
    rex = next(g for g in games if g.target.concept == "rex")
    if k <= 3:  # two other dogs exist: the negatives stay in the category
        assert {c.category for j, c in enumerate(rex.candidates) if j != rex.answer} == {"dog"}
    else:  # only two other dogs: the third negative falls back to another category
        assert {c.category for j, c in enumerate(rex.candidates) if j != rex.answer} > {"dog"}
    mug = next(g for g in games if g.target.concept == "mug")
    assert mug.candidates[mug.answer] == mug.target  # a one-photo concept is its own positive
    assert data.mine_games(examples, pixel_embedding, k=k, seed=0) == games


@pytest.mark.parametrize("k", [2, 3])
def test_mine_games_takes_negatives_from_known_lookalikes_first(bench, k):
    examples = data.load_examples(bench, {c: cat for c, (cat, _) in LAYOUT.items()})
    # Look-alikes go first even from another category; one that has no photos ("ghost") is no candidate.
    lookalikes = {"rex": ["tom", "ghost"], "fido": ["mug", "spot"]}
    games = data.mine_games(examples, pixel_embedding, k=k, seed=0, lookalikes=lookalikes)
    vectors = np.stack([pixel_embedding(e.path) for e in examples])
    for i, game in enumerate(games):
        positive, negatives = brute_force_game(examples, vectors, i, k, lookalikes.get(game.target.concept, ()))
        assert set(game.candidates) - {positive} == negatives
    for game in games:
        others = {c.concept for j, c in enumerate(game.candidates) if j != game.answer}
        if game.target.concept == "rex":
            assert "tom" in others  # a cat, ranked before the two other dogs
        if game.target.concept == "fido":
            assert others == ({"mug", "spot"} if k == 3 else others & {"mug", "spot"}) and len(others) == k - 1
        if game.target.concept == "spot":
            assert "tom" not in others and "mug" not in others  # no look-alikes: its category first, as before
    assert games != data.mine_games(examples, pixel_embedding, k=k, seed=0)


def test_load_lookalikes_reads_a_concept_map_and_names_a_bad_file(tmp_path):
    good = tmp_path / "lookalikes.json"
    good.write_text(json.dumps({"rex": ["fido"], "fido": ["rex"]}))
    assert data.load_lookalikes(good) == {"rex": ["fido"], "fido": ["rex"]}
    for name, text in (("list.json", "[1, 2]"), ("values.json", '{"rex": "fido"}'), ("broken.json", "{")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=name):
            data.load_lookalikes(tmp_path / name)
    with pytest.raises(ValueError, match="missing.json"):
        data.load_lookalikes(tmp_path / "missing.json")


def test_mine_games_needs_enough_concepts(bench):
    examples = data.load_examples(bench, {c: cat for c, (cat, _) in LAYOUT.items()})
    with pytest.raises(ValueError):
        data.mine_games(examples, pixel_embedding, k=6)


def test_embedding_cache_reuses_and_refreshes(bench, tmp_path):
    paths = sorted(bench.glob("*/*.jpg"))
    calls = []

    def counting(path):
        calls.append(path)
        return pixel_embedding(path)

    cache = data.EmbeddingCache(tmp_path / "emb.npz")
    first = cache.embed(paths, counting)
    cache.save()
    assert len(calls) == len(paths)
    reloaded = data.EmbeddingCache(tmp_path / "emb.npz")
    np.testing.assert_array_equal(reloaded.embed(paths, counting), first)
    assert len(calls) == len(paths)  # nothing re-embedded

    draw_photo(99, (64, 48)).save(paths[0], "JPEG")
    st = paths[0].stat()
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = reloaded.embed(paths, counting)
    assert calls[len(paths) :] == [paths[0]]
    assert not np.allclose(again[0], first[0]) and np.array_equal(again[1:], first[1:])
