"""The demo world: concepts and look-alikes, photos that vary only in nuisances, and the files on disk."""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rrg_local.demo.attributes import (
    ATTRIBUTES,
    COLOURS,
    PARTS,
    differing_attributes,
    is_valid,
    random_concept,
    read_attributes,
)
from rrg_local.demo.objects import draw_object
from rrg_local.demo.world import (
    CATEGORIES,
    SCENES,
    Concept,
    describe_truth,
    generate_benchmark,
    generate_world_library,
    lookalikes,
    render_photo,
)

SMALL = {"n_concepts": 4, "photos_per_concept": 3, "n_distractor_photos": 2, "size": 128}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _jpeg_roundtrip(img: Image.Image, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)


def test_library_is_deterministic_for_a_seed(tmp_path):
    a = _hashes(generate_world_library(tmp_path / "a", seed=3, **SMALL).root)
    b = _hashes(generate_world_library(tmp_path / "b", seed=3, **SMALL).root)
    c = _hashes(generate_world_library(tmp_path / "c", seed=4, **SMALL).root)
    assert len(a) == 4 * 3 + 2 + 1  # photos + truth.json
    assert a == b
    assert set(a.values()).isdisjoint(set(c.values()))


def test_render_photo_is_pure_given_the_rng():
    concept = random_concept(random.Random(1), "mug")
    img1, truth1 = render_photo([concept], "beach", random.Random(9), 160)
    img2, truth2 = render_photo([concept], "beach", random.Random(9), 160)
    assert img1.tobytes() == img2.tobytes() and truth1 == truth2


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_and_part_variant_renders(category):
    rng = random.Random(0)
    sprites = []
    for variant in PARTS[category][1]:
        concept = Concept(category, "red", "blue", "plain", variant, "star")
        sprite = np.asarray(draw_object(concept, 112))
        assert (sprite[..., 3] > 0).mean() > 0.25  # a solid object, not a speck
        sprites.append(sprite)
        img, truth = render_photo([concept], rng.choice(SCENES), rng, 224)
        assert img.size == (224, 224) and truth.concepts == (concept,)
        x0, y0, x1, y1 = next(o.box for o in truth.objects if not o.is_distractor)
        assert x1 - x0 >= 60 and y1 - y0 >= 60
    # The part variant is visible: each variant changes a good number of pixels.
    for i in range(len(sprites)):
        for j in range(i + 1, len(sprites)):
            assert (np.abs(sprites[i].astype(int) - sprites[j].astype(int)).max(-1) > 40).sum() > 150


def test_lookalikes_differ_in_exactly_one_attribute():
    rng = random.Random(5)
    for _ in range(50):
        concept = random_concept(rng)
        assert is_valid(concept)
        others = lookalikes(concept, rng)
        assert len(set(others)) == len(others) == len(ATTRIBUTES)
        changed = [differing_attributes(concept, o) for o in others]
        assert all(len(d) == 1 and d != ["category"] for d in changed)
        assert sorted(d[0] for d in changed) == sorted(ATTRIBUTES)
        assert all(is_valid(o) for o in others)
        assert len({describe_truth(c) for c in [concept, *others]}) == len(others) + 1


def test_describe_truth_names_the_visible_attributes_only():
    concept = Concept("teddy bear", "green", "white", "dots", "floppy", "heart")
    text = describe_truth(concept)
    assert text.startswith("<coarse>A photo of a green teddy bear.</coarse> <detailed>")
    for word in ("white dots", "floppy ears", "heart"):
        assert word in text
    assert not any(scene in text for scene in SCENES)


def test_truth_json_matches_files_on_disk(tmp_path):
    manifest = generate_world_library(tmp_path / "lib", seed=1, **SMALL)
    truth = json.loads(manifest.truth_path.read_text())
    on_disk = sorted(str(p.relative_to(manifest.root)) for p in manifest.root.rglob("*.jpg"))
    assert on_disk == sorted(truth["files"]) == sorted(manifest.files)
    assert set(truth["concepts"]) == set(manifest.concepts)
    seen = {name: 0 for name in manifest.concepts}
    for rel, info in truth["files"].items():
        with Image.open(manifest.root / rel) as img:
            assert img.size == (128, 128)
            taken = img.getexif().get_ifd(0x8769)[36867]
            assert img.getexif()[272]  # camera model
        assert rel.split("/")[1] == taken[:10].replace(":", "-")  # dated folder = capture date
        assert info["scene"] in SCENES
        for name in info["concepts"]:
            seen[name] += 1
        boxes = [o for o in info["objects"] if not o["distractor"]]
        assert [o["concept"] for o in boxes] == info["concepts"]
    assert all(n == 3 for n in seen.values())
    groups = {c["lookalike_group"] for c in truth["concepts"].values()}
    assert len(groups) == 2  # pairs of look-alikes: mug-1/mug-2, teddy-bear-1/teddy-bear-2
    pair = [Concept(**c["attributes"]) for c in truth["concepts"].values()][:2]
    assert len(differing_attributes(*pair)) == 1


def test_benchmark_layout_loads_with_the_trainer(tmp_path):
    from trainer.data import load_examples, load_lookalikes, mine_games
    from trainer.train import pixel_embedding

    root = generate_benchmark(tmp_path / "bench", seed=2, n_concepts=12, photos_per_concept=2, size=96).root
    examples = load_examples(root, root / "categories.csv")
    assert len(examples) == 24
    assert {e.category for e in examples} == set(CATEGORIES)
    truth = json.loads((root / "truth.json").read_text())
    assert all(truth["concepts"][e.concept]["category"] == e.category for e in examples)
    # Each concept's look-alikes for the trainer's game mining: the other members of its look-alike group.
    lookalikes = load_lookalikes(root / "lookalikes.json")
    group = {name: c["lookalike_group"] for name, c in truth["concepts"].items()}
    assert set(lookalikes) == set(group)
    for name, others in lookalikes.items():
        assert set(others) == {n for n, g in group.items() if g == group[name] and n != name}
    assert any(lookalikes.values())
    games = mine_games(examples, pixel_embedding, k=2, seed=0, lookalikes=lookalikes)
    for game in games:  # a concept with look-alikes meets one of them (k = 2: one negative)
        other = next(c for j, c in enumerate(game.candidates) if j != game.answer)
        assert other.concept in lookalikes[game.target.concept] or not lookalikes[game.target.concept]


def test_same_concept_in_different_scenes_differs_but_keeps_its_colour():
    """Pixels change a lot from scene to scene; the object's main colour (under the photo's light) is always
    inside its box, after JPEG, and far more common there than in the rest of the frame."""
    rng = random.Random(11)
    for category in CATEGORIES:
        concept = random_concept(rng, category)
        photos = []
        inside = []
        for scene in SCENES:
            img, truth = render_photo([concept], scene, rng, 224)
            arr = _jpeg_roundtrip(img, truth.jpeg_quality)
            lit = np.clip(np.asarray(COLOURS[concept.colour]) * truth.brightness * np.asarray(truth.tint), 0, 255)
            near = np.abs(arr - lit).max(-1) < 40
            x0, y0, x1, y1 = next(o.box for o in truth.objects if not o.is_distractor)
            box = np.zeros(near.shape, bool)
            box[y0:y1, x0:x1] = True
            inside.append(near[box].mean())
            photos.append(arr)
        assert min(inside) > 0.01, (concept, inside)
        assert np.median(inside) > 0.05
        diffs = [np.abs(photos[i] - photos[j]).mean() for i in range(6) for j in range(i + 1, 6)]
        assert min(diffs) > 15


def test_nuisance_parameters_vary():
    rng = random.Random(7)
    concept = random_concept(rng, "backpack")
    truths = [render_photo([concept], SCENES[i % 6], rng, 160)[1] for i in range(24)]
    mine = [next(o for o in t.objects if not o.is_distractor) for t in truths]
    assert len({t.brightness for t in truths}) > 20 and len({t.jpeg_quality for t in truths}) > 8
    assert len({t.tint for t in truths}) > 20
    assert len({o.angle for o in mine}) > 20 and len({o.scale for o in mine}) > 20
    assert len({o.box[:2] for o in mine}) > 15
    assert 0 < sum(o.occluded > 0 for o in mine) < 24
    assert 0 < sum(any(o.is_distractor for o in t.objects) for t in truths) < 24
    assert {t.scene for t in truths} == set(SCENES)


def test_demo_world_never_imports_torch():
    code = (
        "import sys, rrg_local.demo.world\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'textual'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_too_small_photos_are_refused():
    with pytest.raises(ValueError, match="below 64 px"):
        render_photo([], "beach", random.Random(0), 48)


def test_descriptions_are_read_back_attribute_by_attribute():
    rng = random.Random(5)
    for _ in range(200):
        concept = random_concept(rng)
        truth = {k: v for k, v in concept.attributes().items() if k != "category"}
        assert read_attributes(concept.category, describe_truth(concept)) == truth
        for other in lookalikes(concept, rng):  # one attribute apart: read as exactly that difference
            read = read_attributes(concept.category, describe_truth(other))
            assert [k for k in truth if read[k] != truth[k]] == differing_attributes(concept, other)
    said = read_attributes("mug", "A photo of a red mug. The red mug has a star mark on the beach.")
    assert said == {"colour": "red", "secondary": None, "pattern": None, "part": None, "mark": "star"}
