"""The shipped demo embedder: what its manifest says, and it tells a concept from its look-alikes."""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest

from rrg_local.demo import run as demo_run
from rrg_local.demo.attributes import lookalikes
from rrg_local.demo.photo import render_photo
from rrg_local.demo.scenes import SCENES
from rrg_local.vlm.protocol import ImageRef

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def embedder():
    from rrg_local.concepts.onnx_embedder import OnnxEmbedder

    demo_run.shipped_embedder()  # every file's sha256 against the manifest
    return OnnxEmbedder(demo_run.EMBEDDER_DIR, threads=1)


def test_manifest_is_the_build_commands_defaults_and_small():
    pytest.importorskip("torch")
    from trainer.demo_embedder import EmbedderConfig

    m = demo_run.shipped_embedder()
    assert m["config"] == {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(EmbedderConfig()).items()}
    assert sum(f["bytes"] for f in m["files"].values()) <= 2 * 2**20
    assert min(m["held_out_accuracy"].values()) >= 0.7  # concepts never trained on


def test_same_object_is_closer_than_its_lookalikes_on_held_out_concepts(embedder):
    from trainer.demo_tasks import draw_concept

    rng = random.Random(11)
    wins = trials = 0
    for _ in range(12):
        concept = draw_concept(rng, evaluation=True)
        shots = [render_photo([c], rng.choice(SCENES), rng, 224)[0] for c in (concept, concept)]
        others = [render_photo([c], rng.choice(SCENES), rng, 224)[0] for c in lookalikes(concept, rng)]
        e = embedder.embed_many([ImageRef(i) for i in shots + others])
        same, apart = float(e[0] @ e[1]), e[0] @ e[2:].T
        wins += int((same > apart).sum())
        trials += len(apart)
    assert wins / trials >= 0.8, (wins, trials)


def test_a_damaged_embedder_is_refused_with_one_line(tmp_path):
    import shutil

    for f in demo_run.EMBEDDER_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    with open(tmp_path / "model.onnx", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(demo_run.DemoError, match="damaged"):
        demo_run.shipped_embedder(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(demo_run.DemoError, match="rrg-train demo-embedder"):
        demo_run.shipped_embedder(tmp_path)
