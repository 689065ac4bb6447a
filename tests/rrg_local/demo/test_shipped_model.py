"""The shipped demo model: complete, as its manifest says, and it loads and answers through the real runtime."""

from __future__ import annotations

import random

import pytest

from rrg_local.demo import run as demo_run
from rrg_local.demo.attributes import CATEGORIES, lookalikes
from rrg_local.demo.photo import render_photo
from rrg_local.vlm import prompts, tasks
from rrg_local.vlm.protocol import ImageRef

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def shipped():
    return demo_run.shipped_model()  # verifies every file's sha256 against the manifest


@pytest.fixture(scope="module")
def model(shipped):
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel

    config = LlamaConfig(
        model=shipped.text, mmproj=shipped.mmproj, lora=shipped.lora, lora_scope=shipped.lora_scope,
        image_max_tokens=shipped.image_max_tokens, n_threads=1,
    )  # fmt: skip
    with LlamaVisionModel(config) as m:
        yield m


def test_manifest_records_the_build_and_fits_the_budget(shipped):
    m = shipped.manifest
    total = sum(f["bytes"] for f in m["files"].values())
    assert total <= 25 * 2**20 and set(m["files"]) == {"text", "mmproj", "lora"}
    build = m["build"]
    assert build["config"]["pretrain"]["seed"] == 0 and build["config"]["pretrain"]["steps"] > 0
    assert build["config"]["rrg"]["steps"] > 0 and "pretrain_s" in build["timings"]
    assert 0.0 <= build["pretrain_final"]["identification"] <= 1.0
    assert m["lora_speaker_only"] and shipped.lora_scope == "speaker" and shipped.image_max_tokens == 16
    assert m["versions"]["torch"] and m["versions"]["transformers"]


def test_the_shipped_build_is_what_the_build_command_makes_now(shipped):
    """`rrg-train demo-model` with its defaults must rebuild the shipped model: the configs may not drift."""
    import json
    from dataclasses import asdict, replace

    from trainer.demo_build import BuildConfig
    from trainer.demo_model import without_new_defaults

    now, stored = json.loads(json.dumps(asdict(BuildConfig()))), shipped.manifest["build"]["config"]
    # Fields added since the build change nothing it makes while they hold their defaults (`device`, `workers`).
    assert stored == without_new_defaults(now, stored, now)
    moved = BuildConfig(pretrain=replace(BuildConfig().pretrain, workers=4))  # a new field off its default
    assert stored != without_new_defaults(json.loads(json.dumps(asdict(moved))), stored, now)


def photo(tmp_path, concept, seed, name="p.jpg"):
    img, truth = render_photo([concept], "grass", random.Random(seed), 224)
    path = tmp_path / name
    img.save(path, "JPEG", quality=90)
    return ImageRef(path), truth


def test_it_describes_recognizes_identifies_and_answers(model, tmp_path):
    from trainer.demo_tasks import describe, draw_concept

    rng = random.Random(11)
    concept = draw_concept(rng, evaluation=True)
    image, _ = photo(tmp_path, concept, 1)
    d = tasks.describe(model, image, concept.category)
    assert d.coarse.startswith("A photo of") and any(c in d.coarse for c in CATEGORIES)
    truth = describe(concept, rng, style="complete")
    text = prompts.ConceptText("Bo", concept.category, truth.coarse, truth.detailed)
    rec = tasks.recognize(model, image, text, reasoning=False)
    assert 0.0 <= rec.p_yes <= 1.0
    other = lookalikes(concept, rng)[0]
    od = describe(other, rng, style="complete")
    ident = tasks.identify(
        model, image, [text, prompts.ConceptText("Pip", other.category, od.coarse, od.detailed)],
        reasoning=False, caption=False, none_option=True,
    )  # fmt: skip
    assert ident.label in ("A", "B", "None") and abs(sum(ident.probs.values()) - 1) < 1e-4
    answer = tasks.ask(model, image, "Where was this photo taken?", [text])
    assert answer.strip()


def test_its_captions_tell_a_concept_from_its_colour_look_alike_and_other_objects(model, tmp_path):
    """The caption-likelihood listener (`tasks.caption_likelihood`) on held-out concepts: the description fits the
    concept's own photo better than the same scene with its colour look-alike or another category's object."""
    from trainer.demo_tasks import describe, draw_concept

    rng = random.Random(5)
    wins = {"colour": 0, "category": 0}
    n = 8
    for i in range(n):
        concept = draw_concept(rng, evaluation=True)
        colour = next(c for c in lookalikes(concept, rng) if c.colour != concept.colour)
        other = draw_concept(rng, evaluation=True, category=next(c for c in CATEGORIES if c != concept.category))
        truth = describe(concept, rng, style="complete")
        text = prompts.ConceptText("Bo", concept.category, truth.coarse, truth.detailed)
        own, *rest = [
            tasks.caption_likelihood(model, photo(tmp_path, shown, 100 + i, f"{i}-{k}.jpg")[0], text).logprob
            for k, shown in enumerate((concept, colour, other))
        ]
        wins["colour"] += own > rest[0]
        wins["category"] += own > rest[1]
    assert wins["colour"] >= n - 1 and wins["category"] >= n - 1, wins
